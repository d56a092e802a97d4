import type { z } from 'zod';
import type { DeviceRow, DeviceService } from '../devices/service.js';
import type { CommandStatus, DeviceCommand, HelloFacts } from './channel.js';
import type { InProgressRule } from './decide.js';
import type { JobRow, NewJob } from './job-store.js';
import type { JobError, JobKind, JobState } from './tables.js';

/** The kind-specific part of a command: what the device gets beside id, kind and expiry. */
export type CommandBody = Omit<DeviceCommand, 'id' | 'kind' | 'expiresAt'>;

/** What a device's answer or hello does to a job. */
export type JobOutcome =
  | { type: 'progress'; progress: number | null; stage: string | null }
  | { type: 'finish'; state: Extract<JobState, 'succeeded' | 'failed' | 'canceled'>; error: JobError | null; progress?: number; result?: unknown }
  | { type: 'ignore'; reason: string };

/** What the engine knows of a hello when it asks the kinds what it means. */
export interface HelloContext extends HelloFacts {
  /** The device had applied a configuration and now reports the factory state: it was reset (told by the configuration kinds' hello reader). */
  wasReset?: boolean;
  /** The hash of the device's effective configuration, when the hello's batch read it (absent: a kind reads it itself). */
  effectiveConfigHash?: string;
}

/**
 * One handler per job kind, as aedes has one per packet type: the generic machine (create, dispatch,
 * redeliver, expire, cancel, finish, audit) lives in the engine; a kind says how its command is built
 * and what the device's answers and hellos mean for it.
 */
export interface JobKindHandler {
  readonly kind: JobKind;
  /** Whether the command carries the device's effective configuration. */
  readonly carriesConfiguration?: boolean;
  /**
   * An urgent kind (a door opening) does not wait behind the device's other jobs: its jobs run in a lane
   * of their own beside them, and one made for a connected device is delivered at once by whoever made it.
   */
  readonly urgent?: boolean;
  /** The command for a delivery to `device` (its record, read by the engine); `{ fail }` when it cannot be built. */
  command(job: JobRow, device: DeviceRow): Promise<CommandBody | { fail: JobError }>;
  /** The rule for an accepted job (pure); none means silence past the deadline redelivers. */
  inProgress?(job: JobRow): InProgressRule | null;
  /**
   * The schema of what the device's final answer reports (`result`): a valid result is stored with the job,
   * shown in its view and carried by its event; one that does not fit is dropped (the answer still counts).
   * Absent, the kind keeps no result.
   */
  readonly result?: z.ZodType;
  /** What an answer means (pure, from the answer alone); absent, the usual rules apply (see `defaultAnswer`). */
  answer?(status: CommandStatus): JobOutcome;
  /** What a hello means for an unfinished job of this kind (pure); null: nothing. */
  hello?(job: JobRow, hello: HelloContext): JobOutcome | null;
  /**
   * A side effect this kind registers: creating a job of `kind` for a device ends this kind's unfinished jobs
   * of that device (canceled, in the creating transaction): a reset ends one-time Autop not yet applied.
   */
  readonly endedBy?: { kind: JobKind; error(created: JobRow): JobError };
  /**
   * Reads every hello before any kind's `hello` rule (the configuration kinds' hash exchange): the facts it
   * adds to the context and the device's installer; null when the MAC has no device record.
   */
  readHello?(mac: string, hello: HelloFacts): Promise<{ installerId: string; facts: Partial<HelloContext> } | null>;
  /** `readHello` for hellos that arrived together, in a few statements; a MAC absent from the answer has no device record. */
  readHellos?(items: { mac: string; hello: HelloFacts }[]): Promise<Map<string, { installerId: string; facts: Partial<HelloContext> }>>;
  /** After a device's answer changed one of its jobs, of any kind (the configuration hash it now runs). */
  afterAnswer?(mac: string, status: CommandStatus): Promise<void>;
  /** After every hello: a job this kind wants made for the device (e.g. provisioning after a hash mismatch). */
  afterHello?(
    mac: string,
    hello: HelloContext,
    unfinished: JobRow[],
    carriesConfiguration: (kind: JobKind) => boolean,
  ): Promise<{ job: Omit<NewJob, 'installerId'>; reason: string } | null>;
}

/** The usual reading of an answer: accepted and in-progress report progress, succeeded and failed end the job. */
export function defaultAnswer(status: CommandStatus): JobOutcome {
  switch (status.state) {
    case 'accepted':
    case 'in-progress':
      return { type: 'progress', progress: status.progress ?? null, stage: null };
    case 'succeeded':
      return { type: 'finish', state: 'succeeded', error: null, progress: 100 };
    case 'failed':
      return { type: 'finish', state: 'failed', error: status.error ?? { code: 'device_failed', message: 'the device reported failure' } };
  }
}

/** The kinds a deployment knows; each registers once. */
export class JobKinds {
  private readonly handlers = new Map<JobKind, JobKindHandler>();

  register(handler: JobKindHandler): void {
    if (this.handlers.has(handler.kind)) throw new Error(`job kind ${handler.kind} is registered twice`);
    this.handlers.set(handler.kind, handler);
  }

  get(kind: JobKind): JobKindHandler {
    const handler = this.handlers.get(kind);
    if (!handler) throw new Error(`no handler for job kind ${kind}`);
    return handler;
  }

  has(kind: JobKind): boolean {
    return this.handlers.has(kind);
  }

  all(): JobKindHandler[] {
    return [...this.handlers.values()];
  }

  carriesConfiguration = (kind: JobKind): boolean => this.handlers.get(kind)?.carriesConfiguration === true;
  urgent = (kind: JobKind): boolean => this.handlers.get(kind)?.urgent === true;

  /** The kinds whose unfinished jobs a new job of `kind` ends. */
  endedBy(kind: JobKind): JobKindHandler[] {
    return this.all().filter((h) => h.endedBy?.kind === kind);
  }
}

/**
 * What the kinds' hello readers make of a hello (the configuration kinds exchange the configuration hash
 * and tell a reset), with the device's installer; null when the MAC has no device record.
 */
export async function readHello(kinds: JobKinds, devices: Pick<DeviceService, 'getRecord'>, mac: string, hello: HelloFacts): Promise<{ context: HelloContext; installerId: string } | null> {
  const context: HelloContext = { ...hello };
  let installerId: string | null = null;
  for (const handler of kinds.all()) {
    if (!handler.readHello) continue;
    const read = await handler.readHello(mac, hello);
    if (!read) return null;
    Object.assign(context, read.facts);
    installerId = read.installerId;
  }
  if (installerId === null) installerId = (await devices.getRecord(mac))?.installerId ?? null;
  return installerId === null ? null : { context, installerId };
}

/** `readHello` for a batch: each kind reads the batch at once where it can, else one hello at a time. */
export async function readHellos(kinds: JobKinds, devices: Pick<DeviceService, 'getRecord'>, items: { mac: string; hello: HelloFacts }[]): Promise<Map<string, { context: HelloContext; installerId: string }>> {
  const read = new Map(items.map(({ mac, hello }) => [mac, { context: { ...hello } as HelloContext, installerId: null as string | null, missing: false }]));
  for (const handler of kinds.all()) {
    if (handler.readHellos) {
      const got = await handler.readHellos(items);
      for (const [mac, r] of read) {
        const one = got.get(mac);
        if (!one) r.missing = true;
        else (Object.assign(r.context, one.facts), (r.installerId = one.installerId));
      }
    } else if (handler.readHello) {
      for (const [mac, r] of read) {
        if (r.missing) continue;
        const one = await handler.readHello(mac, items.find((i) => i.mac === mac)!.hello);
        if (!one) r.missing = true;
        else (Object.assign(r.context, one.facts), (r.installerId = one.installerId));
      }
    }
  }
  const out = new Map<string, { context: HelloContext; installerId: string }>();
  for (const [mac, r] of read) {
    if (r.missing) continue;
    const installerId = r.installerId ?? (await devices.getRecord(mac))?.installerId ?? null;
    if (installerId !== null) out.set(mac, { context: r.context, installerId });
  }
  return out;
}

/** An answer's result as its kind's schema reads it; undefined when the kind keeps none or it does not fit. */
export function resultOf(handler: JobKindHandler, result: unknown, misfit: (issues: number) => void): unknown {
  if (!handler.result) return undefined;
  const parsed = handler.result.safeParse(result);
  if (parsed.success) return parsed.data;
  misfit(parsed.error.issues.length);
  return undefined;
}
