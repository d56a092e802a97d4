import type { DeviceRow } from '../devices/service.js';
import type { CommandStatus, DeviceCommand, HelloFacts } from './channel.js';
import type { InProgressRule } from './decide.js';
import type { JobRow, NewJob } from './job-store.js';
import type { JobError, JobKind, JobState } from './tables.js';

/** The kind-specific part of a command: what the device gets beside id, kind and expiry. */
export type CommandBody = Omit<DeviceCommand, 'id' | 'kind' | 'expiresAt'>;

/** What a device's answer or hello does to a job. */
export type JobOutcome =
  | { type: 'progress'; progress: number | null; stage: string | null }
  | { type: 'finish'; state: Extract<JobState, 'succeeded' | 'failed' | 'canceled'>; error: JobError | null; progress?: number }
  | { type: 'ignore'; reason: string };

/** What the engine knows of a hello when it asks the kinds what it means. */
export interface HelloContext extends HelloFacts {
  /** The device had applied a configuration and now reports the factory state: it was reset. */
  wasReset: boolean;
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
  /** The command for a delivery to `device` (its record, read by the engine); `{ fail }` when it cannot be built. */
  command(job: JobRow, device: DeviceRow): Promise<CommandBody | { fail: JobError }>;
  /** The rule for an accepted job (pure); none means silence past the deadline redelivers. */
  inProgress?(job: JobRow): InProgressRule | null;
  /** What an answer means (pure, from the answer alone); absent, the usual rules apply (see `defaultAnswer`). */
  answer?(status: CommandStatus): JobOutcome;
  /** What a hello means for an unfinished job of this kind (pure); null: nothing. */
  hello?(job: JobRow, hello: HelloContext): JobOutcome | null;
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

  all(): JobKindHandler[] {
    return [...this.handlers.values()];
  }

  carriesConfiguration = (kind: JobKind): boolean => this.handlers.get(kind)?.carriesConfiguration === true;
}
