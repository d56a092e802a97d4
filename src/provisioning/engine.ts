import { DelayedError, type Job, type Queue } from 'bullmq';
import type { Queryable } from '../db/client.js';
import { DrivenQueue } from '../infra/driven-queue.js';
import type { Logger } from '../logger.js';
import type { CommandStatus, DeviceCommand, DeviceEventSink, HelloFacts } from './channel.js';
import { decide } from './decide.js';
import type { EngineObserver, EngineOptions } from './engine-options.js';
import type { IdempotencyKey } from './idempotency.js';
import type { JobActor, JobChange, JobRow, JobStore, Lane, NewJob } from './job-store.js';
import { defaultAnswer, readHello, readHellos, resultOf, type HelloContext, type JobOutcome } from './kinds.js';
import { unfinishedOfDevices, type HelloOfDevice } from './hello-batch.js';
import { finishedStates, type JobKind, type JobState } from './tables.js';
import { LocalWakeGenerations, QueueUnavailableError, twinOptions, twinsToMake, withTimeout, type WakeGenerations } from './twins.js';

/** A job as the engine changes it: urgent ones in their own lane of the store (JobStore's Lane). */
type LanedJob = Pick<JobRow, 'id' | 'mac'> & { urgent?: boolean };
const laneOf = (job: LanedJob): Lane => (job.urgent ? 'urgent' : 'normal');

export type { EngineObserver, EngineOptions } from './engine-options.js';
export { LocalWakeGenerations, QueueUnavailableError, type WakeGenerations } from './twins.js';

const QUEUE = 'provisioning';
/** Delivered jobs whose kind is kept in memory for their answers. */
const MAX_REMEMBERED = 100_000;
/** A step that failed (database or Redis trouble) is tried again after this long, doubling up to a minute. */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60_000;

const CANCELED = { code: 'canceled', message: 'canceled by request' };

/** A job just recorded, with the ids of the jobs its creation ended (a kind's registered side effect). */
export type CreatedJob = JobRow & { ended: string[] };

/**
 * The provisioning engine: the generic job machine. PostgreSQL holds each job's state; a BullMQ job of the
 * same id (its twin) drives it. A job is delivered only when it heads its device's queue and the device is
 * connected; otherwise its twin waits delayed until the job expires, costing no worker slot and no CPU.
 * Device answers, reconnects and finished predecessors promote the waiting twin. Every transition is a
 * conditional update written with its audit and outbox rows (the job store's one transition path), so a
 * restart or a duplicate wake-up re-evaluates safely.
 * What differs by kind is asked of the kind's handler. Reconciliation keeps every unfinished job with a
 * live twin: at start, whenever Redis comes back, and periodically.
 */
export class ProvisioningEngine implements DeviceEventSink {
  private readonly driven: DrivenQueue;
  private readonly wakes: WakeGenerations;
  /** What a hello told, kept until the device is ready: the jobs it asks for are made then. */
  private readonly helloAwaitingReady = new Map<string, { context: HelloContext; installerId: string }>();
  /** The kind of each job this process delivered, so a device's answer needs no read of its job first. */
  private readonly delivered = new Map<string, JobKind>();
  private readonly log: Logger;
  private readonly store: JobStore;
  private readonly observers = new Set<EngineObserver>();
  /** The machine's clock. */
  readonly now: () => number;

  /** Whether a kind is registered (the API's check of a kind it is given). */
  knowsKind = (kind: JobKind): boolean => this.opts.kinds.has(kind);
  kindNames = (): JobKind[] => this.opts.kinds.all().map((h) => h.kind);
  /** Whether a kind's command carries the effective configuration. */
  carriesConfiguration = (kind: JobKind): boolean => this.opts.kinds.carriesConfiguration(kind);

  constructor(private readonly opts: EngineOptions) {
    this.log = opts.logger.child({ component: 'provisioning' });
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.wakes = opts.wakes ?? new LocalWakeGenerations();
    this.driven = new DrivenQueue({
      name: QUEUE,
      redis: opts.redis,
      prefix: opts.queuePrefix,
      queueTimeoutMs: opts.queueTimeoutMs,
      reconcileIntervalMs: opts.reconcileIntervalMs,
      log: this.log,
      what: 'the provisioning queue',
      // Gateway and API processes of a cluster make and wake jobs; engine processes drive them.
      process: opts.worker === false ? undefined : (job, token) => this.process(job, token),
      concurrency: opts.concurrency,
      reconcile: () => this.reconcile(),
      failed: (job, err) => this.log.error({ jobId: job?.id, err: err.message }, 'provisioning twin failed; reconciliation re-adds it'),
    });
  }

  private get queue(): Queue {
    return this.driven.queue;
  }

  start(): Promise<void> {
    return this.driven.start();
  }

  /** Adds an observer; answers its removal. */
  observe(observer: EngineObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  private tell<K extends keyof EngineObserver>(what: K, ...args: Parameters<NonNullable<EngineObserver[K]>>): void {
    for (const o of this.observers) (o[what] as ((...a: unknown[]) => void) | undefined)?.(...args);
  }

  /** Stops the worker and the queue; safe to call after a failed start. */
  stop(): Promise<void> {
    return this.driven.stop();
  }

  // ---- creating jobs: the one path ------------------------------------------------------------------

  /**
   * Records jobs with their audit and outbox rows in the caller's transaction, with the side effects kinds
   * registered for their creation (each job answers the ids of the jobs it ended: `settle` them after the
   * commit); `enqueue` them after it commits. With `claim`, the statement making them claims that key too.
   */
  async create(q: Queryable, actor: JobActor, items: NewJob[], details: Record<string, unknown> = {}, claim?: IdempotencyKey): Promise<CreatedJob[]> {
    const rows = await this.store.create(q, actor, items.map((i) => ({ ...i, urgent: this.opts.kinds.urgent(i.kind) })), details, claim);
    const created: CreatedJob[] = [];
    for (const row of rows) {
      const ended: string[] = [];
      for (const handler of this.opts.kinds.endedBy(row.kind)) {
        const error = handler.endedBy!.error(row);
        const done = await this.store.transition(q, { mac: row.mac, kind: handler.kind }, { type: 'finish', state: 'canceled', error }, actor.label);
        ended.push(...done.map((d) => d.id));
      }
      created.push({ ...row, ended });
    }
    return created;
  }

  /** The provisioning queue's depth, for metrics. */
  queueCounts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'delayed', 'active');
  }

  /**
   * Gives recorded jobs their twins. Throws QueueUnavailableError when Redis does not take them within
   * the queue timeout; the jobs stay recorded and reconciliation adds their twins once Redis is back.
   */
  async enqueue(ids: string[]): Promise<void> {
    await this.addTwins(ids.map((id) => ({ id, delay: 0 })));
  }

  /**
   * The fast path of urgent jobs, once their creation committed: each is driven here and now (delivered
   * when its device is connected and it heads its lane), not behind the twins of every other device's jobs
   * in the queue; its twin is made afterwards, delayed until its answer is due, to redeliver or expire it
   * as any job's. A step that fails leaves the twin to drive the job at once. Throws QueueUnavailableError
   * as `enqueue` does.
   */
  async expedite(ids: string[]): Promise<void> {
    const twins = await Promise.all(
      ids.map(async (id) => {
        try {
          const park = await this.drive(id, 'urgent');
          return park ? { id, delay: Math.max(0, park.until - this.now()) } : null;
        } catch (err) {
          this.log.warn({ jobId: id, err: (err as Error).message }, 'an urgent job could not be delivered at once; its twin drives it');
          return { id, delay: 0 };
        }
      }),
    );
    // A wake-up that came before its twin existed made the twin waiting; adding it again changes nothing.
    await this.addTwins(twins.filter((t) => t !== null));
  }

  private async addTwins(twins: { id: string; delay: number }[]): Promise<void> {
    try {
      for (let i = 0; i < twins.length; i += 1000) {
        await withTimeout(
          this.queue.addBulk(twins.slice(i, i + 1000).map(({ id, delay }) => ({ name: 'job', data: { id }, opts: { ...twinOptions(id), delay } }))),
          this.opts.queueTimeoutMs,
        );
      }
    } catch (err) {
      // Redis's own words go to the log; the answer says only that the queue is unavailable.
      this.log.warn({ err: (err as Error).message, jobs: twins.length }, 'the queue did not take the jobs');
      throw new QueueUnavailableError('the queue did not take the jobs');
    }
  }

  // ---- reconciliation ---------------------------------------------------------------------------------

  /**
   * Every unfinished job gets a live twin: a twin that is missing (Redis lost it) or finished (it failed
   * after its retries) is made again. Then every connected device whose next job has not been delivered
   * is woken, so a wake-up lost while Redis was away never leaves a job parked until it expires (a
   * delivered job wakes by itself at its answer deadline). Answers the ids re-added.
   */
  async reconcile(): Promise<string[]> {
    const unfinished = await this.store.unfinished();
    const ids = unfinished.map((j) => j.id);
    const readd = await twinsToMake(this.queue, this.driven.client, ids, this.opts.queueTimeoutMs);
    if (readd.length) {
      await this.enqueue(readd);
      this.log.info({ jobs: readd.length }, 'reconciliation gave unfinished jobs their twins again');
    }
    // The head of each lane of each device (urgent jobs and the others).
    const heads = new Map<string, { mac: string; id: string; state: JobState }>();
    for (const j of unfinished) if (!heads.has(`${j.mac}/${j.urgent}`)) heads.set(`${j.mac}/${j.urgent}`, j);
    for (const { mac, id, state } of heads.values()) if (state === 'queued' && (await this.opts.channel.connectedSince(mac)) !== null) await this.wake(mac, id);
    this.tell('reconciled', readd);
    return readd;
  }

  // ---- waking -----------------------------------------------------------------------------------------

  private wakeGeneration(mac: string): Promise<number> {
    return this.wakes.current(mac);
  }

  /**
   * Promotes the jobs heading a device's lanes (device connected, predecessor finished); `head` when the
   * caller read the one head to wake already (a finish reads its lane's next head in its own statement).
   */
  async wake(mac: string, head?: string | null): Promise<void> {
    await this.wakes.bump(mac);
    const ids = head === undefined ? await this.store.headsOf(mac) : head ? [head] : [];
    for (const id of ids) await this.promote(id);
  }

  private async promote(id: string): Promise<void> {
    const job = await this.queue.getJob(id);
    if (!job) {
      await this.enqueue([id]); // lost from Redis: make it runnable again
      return;
    }
    // Promoting a job that is not delayed (it started meanwhile) fails harmlessly: one round trip, not two.
    await job.promote().catch(() => {});
  }

  /**
   * Removes the twins of finished jobs (a twin a worker holds right now cannot be removed: that worker
   * finds the job finished and completes it).
   */
  async settle(ids: string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.queue.remove(id).catch(() => 0)));
  }

  /** Removes the finished job's twin and hands the device to its next job. */
  private async afterFinish(row: Pick<JobRow, 'id' | 'mac'>, nextHead?: string | null): Promise<void> {
    await this.settle([row.id]);
    await this.wake(row.mac, nextHead);
  }

  // ---- the worker ---------------------------------------------------------------------------------

  private async process(job: Job<{ id: string; retries?: number }>, token: string | undefined): Promise<void> {
    try {
      const park = await this.drive(job.data.id);
      if (park === null) return;
      await job.moveToDelayed(park.until, token);
      // A wake-up that came while the twin was being parked found it active and could not promote it: it
      // is promoted once this run has ended (BullMQ still tracks this run until then), not left asleep.
      if ((await this.wakeGeneration(park.mac)) !== park.generation) setImmediate(() => void job.promote().catch(() => {}));
    } catch (err) {
      if (err instanceof DelayedError) throw err;
      // Database or Redis trouble: look again later rather than fail the twin (a failed twin stops driving
      // its job until reconciliation notices).
      const retries = job.data.retries ?? 0;
      this.log.warn({ jobId: job.data.id, err: (err as Error).message, retries }, 'provisioning step failed; trying again later');
      await job.updateData({ ...job.data, retries: retries + 1 }).catch(() => {});
      await job.moveToDelayed(this.now() + Math.min(RETRY_BASE_MS * 2 ** retries, RETRY_MAX_MS), token);
    }
    throw new DelayedError();
  }

  /**
   * Decides and acts for one job until it is finished (null) or waits: when to look again, and the
   * device's wake generation the decision was made under.
   */
  private async drive(id: string, lane: Lane = 'normal'): Promise<{ until: number; mac: string; generation: number } | null> {
    for (;;) {
      const loaded = await this.store.loadWithHead(id, lane);
      if (!loaded || finishedStates.includes(loaded.row.state)) return null;
      const { row, headId } = loaded;
      const [generation, since] = await Promise.all([this.wakeGeneration(row.mac), this.opts.channel.connectedSince(row.mac)]);
      const handler = this.opts.kinds.get(row.kind);
      const now = this.now();
      const decision = decide(
        {
          state: row.state,
          attempts: row.attempts,
          expiresAt: row.expiresAt.getTime(),
          deliveredAt: row.deliveredAt?.getTime() ?? null,
          deadlineAt: row.deadlineAt?.getTime() ?? null,
          isHead: headId === row.id,
        },
        since,
        now,
        this.opts.policy,
        row.state === 'in-progress' ? (handler.inProgress?.(row) ?? null) : null,
      );
      if (decision.action === 'finish') {
        await this.finish(row, { state: decision.state, error: decision.error }, 'engine');
        return null;
      }
      if (decision.action === 'wait') {
        if (generation !== (await this.wakeGeneration(row.mac))) continue; // woken while deciding: decide again
        return { until: decision.until, mac: row.mac, generation };
      }
      // The device the job was made for must still exist and belong to the same installer: a MAC deleted
      // and bound again (perhaps by someone else) never receives its former owner's commands.
      const device = await this.opts.devices.getRecord(row.mac, laneOf(row));
      if (!device || device.installerId !== row.installerId) {
        await this.finish(row, { state: 'failed', error: { code: 'device_deleted', message: 'the device this job was made for no longer exists' } }, 'engine');
        return null;
      }
      // Conditional on the state and attempts read: an answer (accepted, in-progress) that arrived meanwhile wins.
      const dispatched = await this.store.transition(
        null,
        { id: row.id, state: row.state, attempts: row.attempts },
        { type: 'dispatch', state: decision.state, attempts: decision.attempts, deadline: new Date(decision.deadline) },
        'engine',
        {},
        laneOf(row),
      );
      if (!dispatched.length) continue; // changed under us: decide again
      // Built only once the job has left `queued`: a change that skips a device whose configuration job is
      // still queued (followDirectory) then never meets a command rendered before it.
      const body = await handler.command(row, device);
      if ('fail' in body) {
        await this.finish(row, { state: 'failed', error: body.fail }, 'engine');
        return null;
      }
      // The delivery is audited (in the dispatch statement) before it is published, so a fast device's
      // answer never reaches the audit log before its delivery.
      const command: DeviceCommand = { id: row.id, kind: row.kind, ...body, expiresAt: row.expiresAt.toISOString() };
      this.remember(row.id, row.kind);
      await this.opts.channel.publish(row.mac, command);
      if (generation !== (await this.wakeGeneration(row.mac))) continue;
      return { until: Math.min(decision.deadline, row.expiresAt.getTime()), mac: row.mac, generation };
    }
  }

  private remember(id: string, kind: JobKind) {
    // Bounded: the oldest entries go first (their answers then read the kind from the database).
    if (this.delivered.size >= MAX_REMEMBERED) this.delivered.delete(this.delivered.keys().next().value!);
    this.delivered.set(id, kind);
  }

  /** Finishes an unfinished job and moves its device on; false when it had finished already. */
  private async finish(row: LanedJob, end: Omit<Extract<JobChange, { type: 'finish' }>, 'type'>, actor: string): Promise<boolean> {
    this.delivered.delete(row.id);
    const [done] = await this.store.transition(null, { id: row.id, mac: row.mac }, { type: 'finish', ...end }, actor, {}, laneOf(row));
    if (!done) return false;
    this.log.info({ jobId: row.id, mac: row.mac, state: end.state }, 'job finished');
    // The job has finished whatever Redis says; a twin or a successor left waiting is found by the next
    // wake-up or reconciliation.
    await this.afterFinish(row, done.nextHeadId).catch((err: unknown) => this.log.warn({ jobId: row.id, err: (err as Error).message }, 'could not hand the device to its next job now'));
    return true;
  }

  /** Applies what an answer or a hello means for an unfinished job; false when it changed nothing. */
  private async apply(row: LanedJob, outcome: JobOutcome, actor: string): Promise<boolean> {
    if (outcome.type === 'ignore') return false;
    if (outcome.type === 'progress') {
      const deadline = new Date(this.now() + this.opts.policy.inProgressTimeoutMs);
      const changed = await this.store.transition(null, { id: row.id, mac: row.mac }, { type: 'progress', progress: outcome.progress, stage: outcome.stage, deadline }, actor, {}, laneOf(row));
      return changed.length > 0;
    }
    return this.finish(row, { state: outcome.state, error: outcome.error, progress: outcome.progress, result: outcome.result }, actor);
  }

  // ---- events from the gateway -------------------------------------------------------------------

  /**
   * A device is connected and its hello was processed (or its grace period passed): first the jobs its
   * hello asks for are made (a provisioning after a hash mismatch), now that they can be delivered at
   * once; then what waits for the device is handed to it.
   */
  async deviceReady(mac: string): Promise<void> {
    const hello = this.helloAwaitingReady.get(mac);
    this.helloAwaitingReady.delete(mac);
    try {
      // The head is read again here, not taken from the hello's read: a job parked between the two would
      // otherwise wait until it expires.
      if (hello) await this.jobsAskedByHello(mac, hello);
      await this.wake(mac);
    } finally {
      if (hello) this.tell('helloProcessed', mac);
    }
  }

  /**
   * A device said hello. Each unfinished job's kind reads it (an upgrade ends by the version, a reset
   * ends one-time Autop); the jobs the hello asks for are made once the device is ready (`deviceReady`).
   */
  async deviceHello(mac: string, hello: HelloFacts): Promise<void> {
    const read = await readHello(this.opts.kinds, this.opts.devices, mac, hello);
    if (!read) {
      this.tell('helloProcessed', mac); // a MAC without a device record: nothing more to do
      return;
    }
    const { context, installerId } = read;
    for (const row of await this.store.unfinishedOf(mac)) {
      const outcome = this.opts.kinds.get(row.kind).hello?.(row, context);
      if (outcome && outcome.type !== 'ignore') await this.apply(row, outcome, outcome.type === 'finish' && outcome.state === 'canceled' ? 'engine' : 'device');
    }
    this.helloAwaitingReady.set(mac, { context, installerId });
  }


  /**
   * Each kind may want a job made after a hello (provisioning after a hash mismatch): the one path creates
   * it. Answers the device's unfinished jobs in queue order, the new ones included.
   */
  private async jobsAskedByHello(mac: string, hello: { context: HelloContext; installerId: string }): Promise<JobRow[]> {
    const unfinished = await this.store.unfinishedOf(mac);
    for (const handler of this.opts.kinds.all()) {
      const wanted = await handler.afterHello?.(mac, hello.context, unfinished, this.opts.kinds.carriesConfiguration);
      if (!wanted) continue;
      const [created] = await this.create(this.store.db, { accountId: null, label: 'device' }, [{ ...wanted.job, installerId: hello.installerId }], { reason: wanted.reason });
      if (created) {
        unfinished.push(created);
        await this.enqueue([created.id]);
      }
    }
    return unfinished;
  }

  // ---- batched hellos (a storm: the gateway hands over hellos that arrived together) ----------------

  /** `deviceHello` for many devices: the kinds read the batch at once, their unfinished jobs in one read. */
  async devicesHello(batch: HelloOfDevice[]): Promise<void> {
    const macs = batch.map((b) => b.mac);
    const [read, unfinished] = await Promise.all([readHellos(this.opts.kinds, this.opts.devices, batch), unfinishedOfDevices(this.store.db, macs)]);
    for (const mac of macs) {
      const r = read.get(mac);
      if (!r) {
        this.tell('helloProcessed', mac); // a MAC without a device record: nothing more to do
        continue;
      }
      for (const row of unfinished.get(mac) ?? []) {
        const outcome = this.opts.kinds.get(row.kind).hello?.(row, r.context);
        if (outcome && outcome.type !== 'ignore') await this.apply(row, outcome, outcome.type === 'finish' && outcome.state === 'canceled' ? 'engine' : 'device');
      }
      this.helloAwaitingReady.set(mac, r);
    }
  }

  /**
   * `deviceReady` for many devices: one read of their unfinished jobs (after the gateway marked them ready,
   * so a job made meanwhile is read here or finds its device ready), the jobs their hellos ask for made in
   * one statement per reason and enqueued together, and only the lanes' heads woken.
   */
  async devicesReady(macs: string[]): Promise<void> {
    const hellos = new Map<string, { context: HelloContext; installerId: string }>();
    for (const mac of macs) {
      const hello = this.helloAwaitingReady.get(mac);
      this.helloAwaitingReady.delete(mac);
      if (hello) hellos.set(mac, hello);
    }
    try {
      const unfinished = await unfinishedOfDevices(this.store.db, macs);
      const wanted = new Map<string, NewJob[]>();
      for (const [mac, hello] of hellos) {
        for (const handler of this.opts.kinds.all()) {
          const want = await handler.afterHello?.(mac, hello.context, unfinished.get(mac) ?? [], this.opts.kinds.carriesConfiguration);
          if (want) wanted.set(want.reason, [...(wanted.get(want.reason) ?? []), { ...want.job, installerId: hello.installerId }]);
        }
      }
      const created: string[] = [];
      for (const [reason, items] of wanted) for (const row of await this.create(this.store.db, { accountId: null, label: 'device' }, items, { reason })) created.push(row.id);
      if (created.length) await this.enqueue(created);
      await Promise.all(
        macs.map(async (mac) => {
          await this.wakes.bump(mac);
          const rows = unfinished.get(mac) ?? [];
          // Each lane's head (the urgent lane runs beside the others); a device with none has nothing parked.
          for (const head of [rows.find((r) => !r.urgent), rows.find((r) => r.urgent)]) if (head) await this.promote(head.id);
        }),
      );
    } finally {
      for (const mac of hellos.keys()) this.tell('helloProcessed', mac);
    }
  }

  /** A device answered on devices/{MAC}/commands/{id}/status. */
  async commandStatus(mac: string, jobId: string, status: CommandStatus): Promise<void> {
    try {
      // Only an unfinished job of this very device: an answer for another device's job, an unknown job
      // or a finished one (late or repeated) changes nothing (every statement is conditional on that).
      const kind = this.delivered.get(jobId) ?? (await this.store.kindOf(jobId, mac));
      if (!kind) return;
      const handler = this.opts.kinds.get(kind);
      const outcome = handler.answer ? handler.answer(status) : defaultAnswer(status);
      if (outcome.type === 'finish' && status.result !== undefined) outcome.result = resultOf(handler, status.result, (issues) => this.log.info({ jobId, kind, issues }, "an answer's result does not fit its kind's schema; dropped"));
      const applied = await this.apply({ id: jobId, mac, urgent: this.opts.kinds.urgent(kind) }, outcome, 'device');
      if (applied) for (const h of this.opts.kinds.all()) await h.afterAnswer?.(mac, status);
    } finally {
      this.tell('answerProcessed', mac, jobId);
    }
  }


  // ---- requests -----------------------------------------------------------------------------------

  async cancel(row: Pick<JobRow, 'id' | 'mac'>, actor: string): Promise<boolean> {
    return this.finish(row, { state: 'canceled', error: CANCELED }, actor);
  }

  /** Cancels a batch's jobs in these states (those not started), in one transition; answers their ids. */
  async cancelBatch(batchId: string, states: JobState[], actor: string): Promise<string[]> {
    const rows = await this.store.transition(null, { batchId, states }, { type: 'finish', state: 'canceled', error: CANCELED }, actor);
    for (const r of rows) this.delivered.delete(r.id);
    // Each device moves on to its next job (the canceled ones were its heads or waited behind one).
    const heads = new Map(rows.map((r) => [r.mac, r.nextHeadId]));
    await this.settle(rows.map((r) => r.id));
    await Promise.all([...heads].map(([mac, head]) => this.wake(mac, head).catch((err: unknown) => this.log.warn({ mac, err: (err as Error).message }, 'could not hand the device to its next job now'))));
    return rows.map((r) => r.id);
  }

  /** Ends a deleted device's unfinished jobs (they are never delivered to whoever holds the MAC next). */
  async deviceRemoved(mac: string): Promise<void> {
    const rows = await this.store.transition(null, { mac }, { type: 'finish', state: 'canceled', error: { code: 'device_deleted', message: 'the device was deleted' } }, 'engine');
    await this.settle(rows.map((r) => r.id));
  }
}
