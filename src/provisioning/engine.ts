import { EventEmitter } from 'node:events';
import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { queueConnections, Reconciler } from '../infra/queue-connections.js';
import type { Queryable } from '../db/client.js';
import type { DeviceRow, DeviceService } from '../devices/service.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { CommandChannel, CommandStatus, DeviceCommand, DeviceEventSink, HelloFacts } from './channel.js';
import { FACTORY_CONFIG_HASH } from './config-renderer.js';
import { decide, type DeliveryPolicy } from './decide.js';
import { JobStore, type JobActor, type JobRow, type NewJob } from './job-store.js';
import { defaultAnswer, type HelloContext, type JobKinds, type JobOutcome } from './kinds.js';
import { finishedStates, type JobError, type JobKind } from './tables.js';
import { unfinishedOfDevices, type HelloOfDevice } from './hello-batch.js';

export interface EngineOptions {
  store: JobStore;
  /** A Redis connection to copy: the queue and the worker each get their own. */
  redis: Redis;
  devices: DeviceService;
  kinds: JobKinds;
  channel: CommandChannel;
  logger: Logger;
  /** Namespace of this deployment's queues in Redis (derived from its database). */
  queuePrefix: string;
  policy: DeliveryPolicy;
  concurrency: number;
  /** How long a request waits for Redis to take new jobs before it answers 503. */
  queueTimeoutMs: number;
  /** How often PostgreSQL and BullMQ are reconciled (besides at start and whenever Redis comes back). */
  reconcileIntervalMs: number;
  /** Wake-up counters: in memory for one process; shared (Redis) when several processes wake and drive jobs. */
  wakes?: WakeGenerations;
  /** False in processes that create and wake jobs but do not drive them (gateway and API roles of a cluster). */
  worker?: boolean;
  metrics?: Metrics;
  now?: () => number;
  /** Renders many devices' effective configurations at once (the batched hello path compares their hashes). */
  configurations?: { effectiveOfMany(records: DeviceRow[]): Promise<Map<string, { hash: string }>> };
}

/**
 * Counts wake-ups per device, so a worker about to park a job notices a wake it raced with, wherever
 * that wake came from.
 */
export interface WakeGenerations {
  bump(mac: string): Promise<void>;
  current(mac: string): Promise<number>;
}

export class LocalWakeGenerations implements WakeGenerations {
  private readonly counts = new Map<string, number>();
  async bump(mac: string): Promise<void> {
    this.counts.set(mac, (this.counts.get(mac) ?? 0) + 1);
  }
  async current(mac: string): Promise<number> {
    return this.counts.get(mac) ?? 0;
  }
}

/** The queue did not take the jobs in time; they are recorded and run once reconciliation re-adds them. */
export class QueueUnavailableError extends Error {
  override name = 'QueueUnavailableError';
}

const QUEUE = 'provisioning';
/** Delivered jobs whose kind is kept in memory for their answers. */
const MAX_REMEMBERED = 100_000;
/** A step that failed (database or Redis trouble) is tried again after this long, doubling up to a minute. */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60_000;

export interface EngineEvents {
  /** A device's hello has been processed and the device handed its jobs (provisioning queued if needed). */
  hello: [mac: string];
  /** A device's answer has been processed. */
  status: [mac: string, jobId: string];
  /** Reconciliation re-added these jobs to the queue. */
  reconciled: [readded: string[]];
}

/**
 * The provisioning engine: the generic job machine. PostgreSQL holds each job's state; a BullMQ job of the
 * same id (its twin) drives it. A job is delivered only when it heads its device's queue and the device is
 * connected; otherwise its twin waits delayed until the job expires, costing no worker slot and no CPU.
 * Device answers, reconnects and finished predecessors promote the waiting twin. Every transition is a
 * conditional update written with its audit row, so a restart or a duplicate wake-up re-evaluates safely.
 * What differs by kind is asked of the kind's handler. Reconciliation keeps every unfinished job with a
 * live twin: at start, whenever Redis comes back, and periodically.
 */
export class ProvisioningEngine extends EventEmitter<EngineEvents> implements DeviceEventSink {
  private queue!: Queue;
  private worker: Worker | null = null;
  private connections: ReturnType<typeof queueConnections> | null = null;
  private readonly reconciler: Reconciler;
  private readonly wakes: WakeGenerations;
  /** What a hello told, kept until the device is ready: the jobs it asks for are made then. */
  private readonly helloAwaitingReady = new Map<string, { context: HelloContext; installerId: string }>();
  /** The kind of each job this process delivered, so a device's answer needs no read of its job first. */
  private readonly delivered = new Map<string, JobKind>();
  private readonly log: Logger;
  private readonly store: JobStore;
  private readonly now: () => number;

  /** Whether a kind's command carries the effective configuration. */
  carriesConfiguration = (kind: JobKind): boolean => this.opts.kinds.carriesConfiguration(kind);

  constructor(private readonly opts: EngineOptions) {
    super();
    this.log = opts.logger.child({ component: 'provisioning' });
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.wakes = opts.wakes ?? new LocalWakeGenerations();
    this.reconciler = new Reconciler(() => this.reconcile(), { intervalMs: opts.reconcileIntervalMs, log: this.log, what: 'the provisioning queue' });
  }

  async start(): Promise<void> {
    const connections = queueConnections(this.opts.redis, this.opts.queueTimeoutMs);
    this.connections = connections;
    this.queue = new Queue(QUEUE, { connection: connections.queue, prefix: this.opts.queuePrefix });
    this.queue.on('error', (err) => this.log.warn({ err: err.message }, 'provisioning queue error'));
    if (this.opts.worker === false) return;
    this.worker = new Worker(QUEUE, (job, token) => this.process(job, token), {
      connection: connections.worker,
      prefix: this.opts.queuePrefix,
      concurrency: this.opts.concurrency,
      // A twin whose worker died is put back, however often: reconciliation is the backstop, not failure.
      maxStalledCount: 1000,
    });
    this.worker.on('error', (err) => this.log.warn({ err: err.message }, 'provisioning worker error'));
    this.worker.on('failed', (job, err) => this.log.error({ jobId: job?.id, err: err.message }, 'provisioning twin failed; reconciliation re-adds it'));
    await this.reconcile();
    this.reconciler.watch(connections.queue);
  }

  /** Stops the worker and the queue; safe to call after a failed start. */
  async stop(): Promise<void> {
    await this.reconciler.stop();
    await this.worker?.close();
    await this.queue?.close();
    this.connections?.close();
  }

  // ---- creating jobs: the one path ------------------------------------------------------------------

  /** Records jobs and their audit rows in the caller's transaction; `enqueue` them after it commits. */
  async create(q: Queryable, actor: JobActor, items: NewJob[], details: Record<string, unknown> = {}): Promise<JobRow[]> {
    const rows = await this.opts.store.create(q, actor, items, details);
    if (this.opts.metrics) for (const row of rows) this.opts.metrics.jobCreated(row.kind);
    return rows;
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
    try {
      for (let i = 0; i < ids.length; i += 1000) {
        await withTimeout(
          this.queue.addBulk(ids.slice(i, i + 1000).map((id) => ({ name: 'job', data: { id }, opts: twinOptions(id) }))),
          this.opts.queueTimeoutMs,
        );
      }
    } catch (err) {
      // Redis's own words go to the log; the answer says only that the queue is unavailable.
      this.log.warn({ err: (err as Error).message, jobs: ids.length }, 'the queue did not take the jobs');
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
    await withTimeout(this.queue.waitUntilReady(), this.opts.queueTimeoutMs);
    const client = this.connections!.queue;
    const readd: string[] = [];
    for (let i = 0; i < ids.length; i += 1000) {
      const chunk = ids.slice(i, i + 1000);
      const pipeline = client.pipeline();
      for (const id of chunk) pipeline.hmget(this.queue.toKey(id), 'timestamp', 'finishedOn');
      const results = (await withTimeout(pipeline.exec(), this.opts.queueTimeoutMs)) ?? [];
      for (const [k, [err, fields]] of results.entries()) {
        if (err) throw err;
        const [timestamp, finishedOn] = fields as [string | null, string | null];
        const id = chunk[k]!;
        if (timestamp === null) readd.push(id);
        else if (finishedOn !== null) {
          await this.queue.remove(id);
          readd.push(id);
        }
      }
    }
    if (readd.length) {
      await this.enqueue(readd);
      this.log.info({ jobs: readd.length }, 'reconciliation gave unfinished jobs their twins again');
    }
    const heads = new Map<string, string>();
    for (const j of unfinished) if (!heads.has(j.mac)) heads.set(j.mac, j.state);
    for (const [mac, state] of heads) if (state === 'queued' && (await this.opts.channel.connectedSince(mac)) !== null) await this.wake(mac);
    this.emit('reconciled', readd);
    return readd;
  }

  // ---- waking -----------------------------------------------------------------------------------------

  private wakeGeneration(mac: string): Promise<number> {
    return this.wakes.current(mac);
  }

  /**
   * Promotes the job at the head of a device's queue (device connected, predecessor finished); `head` when
   * the caller read it already (a finish reads the next head in its own statement).
   */
  async wake(mac: string, head?: string | null): Promise<void> {
    await this.wakes.bump(mac);
    const id = head === undefined ? await this.store.headOf(mac) : head;
    if (id) await this.promote(id);
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
  private async drive(id: string): Promise<{ until: number; mac: string; generation: number } | null> {
    for (;;) {
      const loaded = await this.store.loadWithHead(id);
      if (!loaded || finishedStates.includes(loaded.row.state)) return null;
      const { row, headId } = loaded;
      const generation = await this.wakeGeneration(row.mac);
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
        await this.opts.channel.connectedSince(row.mac),
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
      const device = await this.opts.devices.getRecord(row.mac);
      if (!device || device.installerId !== row.installerId) {
        await this.finish(row, { state: 'failed', error: { code: 'device_deleted', message: 'the device this job was made for no longer exists' } }, 'engine');
        return null;
      }
      const body = await handler.command(row, device);
      if ('fail' in body) {
        await this.finish(row, { state: 'failed', error: body.fail }, 'engine');
        return null;
      }
      const dispatched = await this.store.dispatch(row, { state: decision.state, attempts: decision.attempts, at: new Date(now), deadline: new Date(decision.deadline) });
      if (!dispatched) continue; // changed under us: decide again
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
  private async finish(row: Pick<JobRow, 'id' | 'mac'>, end: { state: JobRow['state']; error: JobError | null; progress?: number }, actor: string): Promise<boolean> {
    this.delivered.delete(row.id);
    const done = await this.store.finish(row.id, row.mac, end, actor);
    if (!done) return false;
    this.opts.metrics?.jobFinished(done.kind, done.state as 'succeeded', actor === 'device' ? (done.deliveredAt?.getTime() ?? null) : null);
    this.log.info({ jobId: row.id, mac: row.mac, state: end.state }, 'job finished');
    // The job has finished whatever Redis says; a twin or a successor left waiting is found by the next
    // wake-up or reconciliation.
    await this.afterFinish(row, done.nextHeadId).catch((err: unknown) => this.log.warn({ jobId: row.id, err: (err as Error).message }, 'could not hand the device to its next job now'));
    return true;
  }

  /** Applies what an answer or a hello means for an unfinished job; false when it changed nothing. */
  private async apply(row: Pick<JobRow, 'id' | 'mac'>, outcome: JobOutcome, actor: string): Promise<boolean> {
    if (outcome.type === 'ignore') return false;
    if (outcome.type === 'progress') {
      return this.store.progress(row.id, row.mac, { progress: outcome.progress, stage: outcome.stage, deadline: new Date(this.now() + this.opts.policy.inProgressTimeoutMs) });
    }
    return this.finish(row, { state: outcome.state, error: outcome.error, progress: outcome.progress }, actor);
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
      if (hello) this.emit('hello', mac);
    }
  }

  /**
   * A device said hello. Each unfinished job's kind reads it (an upgrade ends by the version, a reset
   * ends one-time Autop); the jobs the hello asks for are made once the device is ready (`deviceReady`).
   */
  async deviceHello(mac: string, hello: HelloFacts): Promise<void> {
    const reported = hello.configHash ?? FACTORY_CONFIG_HASH;
    const exchanged = await this.opts.devices.exchangeConfigHash(mac, reported);
    if (!exchanged) {
      this.emit('hello', mac); // a MAC without a device record: nothing more to do
      return;
    }
    const context: HelloContext = { ...hello, wasReset: wasReset(reported, exchanged.previous) };
    await this.helloRules(await this.store.unfinishedOf(mac), context);
    this.helloAwaitingReady.set(mac, { context, installerId: exchanged.installerId });
  }

  /** Each unfinished job's kind reads the hello (an upgrade ends by the version, a reset ends one-time Autop). */
  private async helloRules(unfinished: JobRow[], context: HelloContext): Promise<void> {
    for (const row of unfinished) {
      const outcome = this.opts.kinds.get(row.kind).hello?.(row, context);
      if (outcome && outcome.type !== 'ignore') await this.apply(row, outcome, outcome.type === 'finish' && outcome.state === 'canceled' ? 'engine' : 'device');
    }
  }

  // ---- batched hellos (a storm: the gateway hands over hellos that arrived together) ----------------

  /**
   * `deviceHello` for many devices: their hashes exchanged in one statement (written only where they
   * changed), their unfinished jobs in one read, their effective configurations rendered from two reads,
   * so a device that reports the configuration it should hold and has no job costs no statement of its own.
   */
  async devicesHello(batch: HelloOfDevice[]): Promise<void> {
    const reports = batch.map(({ mac, hello }) => ({ mac, hash: hello.configHash ?? FACTORY_CONFIG_HASH }));
    const macs = reports.map((r) => r.mac);
    const [exchanged, unfinished] = await Promise.all([this.opts.devices.exchangeConfigHashes(reports), unfinishedOfDevices(this.store.db, macs)]);
    const effective = (await this.opts.configurations?.effectiveOfMany([...exchanged.values()].map((e) => e.record))) ?? new Map<string, { hash: string }>();
    for (const [i, { mac, hello }] of batch.entries()) {
      const found = exchanged.get(mac);
      if (!found) {
        this.emit('hello', mac); // a MAC without a device record: nothing more to do
        continue;
      }
      const context: HelloContext = { ...hello, wasReset: wasReset(reports[i]!.hash, found.previous), effectiveConfigHash: effective.get(mac)?.hash };
      await this.helloRules(unfinished.get(mac) ?? [], context);
      this.helloAwaitingReady.set(mac, { context, installerId: found.record.installerId });
    }
  }

  /**
   * `deviceReady` for many devices (their hellos processed by `devicesHello`): one read of their unfinished
   * jobs, the jobs their hellos ask for made in one statement and enqueued together, and only devices with
   * a job waiting are woken. The read comes after the gateway marked them ready, so a job made meanwhile is
   * either read here or finds its device ready.
   */
  async devicesReady(macs: string[]): Promise<void> {
    const hellos = new Map<string, { context: HelloContext; installerId: string }>();
    for (const mac of macs) {
      const hello = this.helloAwaitingReady.get(mac);
      if (!hello) continue;
      hellos.set(mac, hello);
      this.helloAwaitingReady.delete(mac);
    }
    try {
      const unfinished = await unfinishedOfDevices(this.store.db, macs);
      const wanted = new Map<string, NewJob[]>(); // by reason: one statement per distinct reason
      for (const [mac, hello] of hellos) {
        for (const handler of this.opts.kinds.all()) {
          const want = await handler.afterHello?.(mac, hello.context, unfinished.get(mac) ?? [], this.opts.kinds.carriesConfiguration);
          if (!want) continue;
          const list = wanted.get(want.reason) ?? [];
          list.push({ ...want.job, installerId: hello.installerId });
          wanted.set(want.reason, list);
        }
      }
      const created: string[] = [];
      for (const [reason, items] of wanted) {
        for (const row of await this.create(this.store.db, { accountId: null, label: 'device' }, items, { reason })) created.push(row.id);
      }
      if (created.length) await this.enqueue(created);
      // A device whose queue was empty at the read has nothing parked: its new job (if any) runs as enqueued.
      await Promise.all(
        macs.map(async (mac) => {
          await this.wakes.bump(mac);
          const head = unfinished.get(mac)?.[0];
          if (head) await this.promote(head.id);
        }),
      );
    } finally {
      for (const mac of hellos.keys()) this.emit('hello', mac);
    }
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

  /** A device answered on devices/{MAC}/commands/{id}/status. */
  async commandStatus(mac: string, jobId: string, status: CommandStatus): Promise<void> {
    try {
      // Only an unfinished job of this very device: an answer for another device's job, an unknown job
      // or a finished one (late or repeated) changes nothing (every statement is conditional on that).
      const kind = this.delivered.get(jobId) ?? (await this.store.kindOf(jobId, mac));
      if (!kind) return;
      const handler = this.opts.kinds.get(kind);
      const applied = await this.apply({ id: jobId, mac }, handler.answer ? handler.answer(status) : defaultAnswer(status), 'device');
      if (applied && status.configHash) await this.opts.devices.exchangeConfigHash(mac, status.configHash);
    } finally {
      this.emit('status', mac, jobId);
    }
  }

  // ---- requests -----------------------------------------------------------------------------------

  async cancel(row: Pick<JobRow, 'id' | 'mac'>, actor: string): Promise<boolean> {
    return this.finish(row, { state: 'canceled', error: { code: 'canceled', message: 'canceled by request' } }, actor);
  }

  /** Ends a device's unfinished jobs of one kind inside the caller's transaction; `settle` them after. */
  async cancelOfKind(q: Queryable, mac: string, kind: JobKind, reason: string, actor: string): Promise<string[]> {
    const rows = await this.store.finishOfKind(q, mac, kind, { state: 'canceled', error: { code: 'reset', message: reason } }, actor);
    return rows.map((r) => r.id);
  }

  /** Ends a deleted device's unfinished jobs (they are never delivered to whoever holds the MAC next). */
  async deviceRemoved(mac: string): Promise<void> {
    const rows = await this.store.finishOfDevice(mac, { state: 'canceled', error: { code: 'device_deleted', message: 'the device was deleted' } }, 'engine');
    await this.settle(rows.map((r) => r.id));
  }
}

/** The device had applied a configuration and now reports the factory state. */
const wasReset = (reported: string, previous: string | null) => reported === FACTORY_CONFIG_HASH && !!previous && previous !== FACTORY_CONFIG_HASH;

/** A twin is removed when done; one that keeps failing is removed too, and reconciliation makes it again. */
const twinOptions = (id: string) => ({ jobId: id, removeOnComplete: true, removeOnFail: true, attempts: 3, backoff: { type: 'exponential', delay: 1000 } });

function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
