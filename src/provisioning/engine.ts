import { DelayedError, Queue, Worker, type Job } from 'bullmq';
import { and, eq, inArray } from 'drizzle-orm';
import type { Redis } from 'ioredis';
import type { Db } from '../db/client.js';
import type { DeviceService } from '../devices/service.js';
import type { Logger } from '../logger.js';
import { FACTORY_CONFIG_HASH, renderConfig } from './config-renderer.js';
import { engineQueries, type EngineQueries } from './engine-queries.js';
import { deviceStatusSchema } from './schemas.js';
import { auditLog, finishedStates, jobs, UNFINISHED, type AutopLine, type JobKind, type JobState, type UpgradeStage } from './tables.js';

/** The narrow interface to the device gateway: is a device connected, and publish a command to it. */
export interface CommandChannel {
  /** When the device's current session began (ms since epoch), or null when it is not connected. */
  connectedSince(mac: string): number | null;
  publish(mac: string, command: DeviceCommand): Promise<void>;
}

/** What a device receives on devices/{MAC}/commands (docs/device-protocol.md). */
export interface DeviceCommand {
  id: string;
  kind: JobKind;
  params: Record<string, unknown>;
  config?: string;
  configHash?: string;
  expiresAt: string;
}

export interface EngineOptions {
  db: Db;
  redis: Redis;
  devices: DeviceService;
  channel: CommandChannel;
  logger: Logger;
  queueName?: string;
  /** How long a device has to answer a delivery before it is redelivered (doubling per attempt). */
  ackTimeoutMs: number;
  /** How long an accepted or in-progress command may go without news. */
  inProgressTimeoutMs: number;
  maxAttempts: number;
  concurrency: number;
  /** Where a device downloads a firmware image (the API's public address). */
  firmwareUrl?: (firmwareId: string) => string;
}

/** What the engine needs of a device's hello. */
export interface HelloFacts {
  configHash?: string;
  firmware?: string;
}

type JobRow = typeof jobs.$inferSelect;
/** Kinds whose delivery carries the effective configuration. */
const CONFIG_KINDS: JobKind[] = ['autop', 'autop-once', 'provision', 'connect-type'];
const MAX_ACK_BACKOFF_MS = 5 * 60_000;
/** Stages after the download: from here the device's next hello decides the upgrade. */
const AWAITING_HELLO: readonly (UpgradeStage | null)[] = ['installing', 'rebooting'];
/** Why an upgrade that went silent failed, by the stage it was last in. */
const UPGRADE_SILENCE: Record<UpgradeStage, { code: string; message: string }> = {
  downloading: { code: 'download_incomplete', message: 'the download did not finish in time' },
  installing: { code: 'install_timeout', message: 'the installation did not finish in time' },
  rebooting: { code: 'no_hello', message: 'the device did not say hello after rebooting in time' },
};

/**
 * Drives provisioning jobs. PostgreSQL holds each job's state; a BullMQ job of the same id drives it.
 * A job is delivered only when it heads its device's queue and the device is connected; otherwise its
 * BullMQ job waits delayed until the job expires, costing no worker slot and no CPU. Device answers,
 * reconnects and finished predecessors promote the waiting job. Every transition is a conditional update,
 * so a restart or a duplicate wake-up re-evaluates safely; devices apply a job id at most once.
 */
export class ProvisioningEngine {
  private queue!: Queue;
  private worker!: Worker;
  private workerConnection: Redis | null = null;
  /** Bumped on every wake-up of a device, so a worker about to park a job notices a wake it raced with. */
  private readonly wakes = new Map<string, number>();
  private readonly log: Logger;
  private readonly q: EngineQueries;

  constructor(private readonly opts: EngineOptions) {
    this.log = opts.logger.child({ component: 'provisioning' });
    this.q = engineQueries(opts.db);
  }

  async start(): Promise<void> {
    const name = this.opts.queueName ?? 'provisioning';
    this.queue = new Queue(name, { connection: this.opts.redis });
    // The worker blocks on its own connection; BullMQ leaves a connection it was given open, so we close it.
    this.workerConnection = this.opts.redis.duplicate();
    this.worker = new Worker(name, (job, token) => this.process(job, token), {
      connection: this.workerConnection,
      concurrency: this.opts.concurrency,
      autorun: true,
    });
    this.worker.on('error', (err) => this.log.error({ err: err.message }, 'provisioning worker error'));
    this.worker.on('failed', (job, err) => this.log.error({ jobId: job?.id, err: err.message }, 'provisioning step failed; BullMQ retries it'));
    await this.reconcile();
  }

  async stop(): Promise<void> {
    await this.worker?.close();
    await this.queue?.close();
    this.workerConnection?.disconnect();
  }

  /** Re-adds the BullMQ job of every unfinished job (Redis may have lost them); existing ids are kept. */
  async reconcile(): Promise<number> {
    const rows = await this.opts.db.select({ id: jobs.id }).from(jobs).where(UNFINISHED);
    await this.enqueue(rows.map((r) => r.id));
    return rows.length;
  }

  /** Makes jobs recorded in PostgreSQL runnable; called after the transaction that created them. */
  async enqueue(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 1000) {
      await this.queue.addBulk(
        ids.slice(i, i + 1000).map((id) => ({
          name: 'job',
          data: { id },
          opts: { jobId: id, removeOnComplete: true, removeOnFail: 1000, attempts: 10, backoff: { type: 'exponential', delay: 1000 } },
        })),
      );
    }
  }

  private wakeGeneration(mac: string) {
    return this.wakes.get(mac) ?? 0;
  }

  /** Promotes the job at the head of a device's queue (device connected, predecessor finished). */
  async wake(mac: string): Promise<void> {
    this.wakes.set(mac, this.wakeGeneration(mac) + 1);
    const head = await this.headJob(mac);
    if (!head) return;
    await this.promote(head.id);
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

  private async headJob(mac: string): Promise<{ id: string } | null> {
    const rows = await this.q.headJob.execute({ mac });
    return rows[0] ?? null;
  }

  // ---- the worker ---------------------------------------------------------------------------------

  /** The job and the id of the job heading its device's queue, in one round trip. */
  private async loadWithHead(id: string): Promise<{ row: JobRow; headId: string | null } | null> {
    const rows = await this.q.loadWithHead.execute({ id });
    return rows[0] ?? null;
  }

  private async process(job: Job<{ id: string }>, token: string | undefined): Promise<void> {
    for (;;) {
      const loaded = await this.loadWithHead(job.data.id);
      if (!loaded || finishedStates.includes(loaded.row.state)) return;
      const { row, headId } = loaded;
      const generation = this.wakeGeneration(row.mac);
      const parkUntil = await this.step(row, headId);
      if (parkUntil === null) return;
      if (generation !== this.wakeGeneration(row.mac)) continue; // woken while deciding: decide again
      await job.moveToDelayed(parkUntil, token);
      throw new DelayedError();
    }
  }

  /** One decision for a job; answers when to look again, or null when the job is finished. */
  private async step(row: JobRow, headId: string | null): Promise<number | null> {
    const now = Date.now();
    const expiresAt = row.expiresAt.getTime();
    if (now >= expiresAt) {
      await this.finish(row, 'expired', { code: 'expired', message: `not finished before ${row.expiresAt.toISOString()}` }, undefined, 'engine');
      return null;
    }
    if (headId !== row.id) return expiresAt; // an earlier job of this device goes first
    const delivered = row.deliveredAt?.getTime() ?? null;
    const deadline = row.deadlineAt?.getTime() ?? 0;
    const upgrading = row.kind === 'upgrade' && row.state === 'in-progress';
    if (upgrading) {
      // A running upgrade ends by the device's hello; silence past the deadline fails it, connected or not.
      if (now >= deadline) {
        await this.finish(row, 'failed', UPGRADE_SILENCE[row.stage ?? 'downloading'], undefined, 'engine');
        return null;
      }
      if (AWAITING_HELLO.includes(row.stage)) return Math.min(deadline, expiresAt);
    }
    const since = this.opts.channel.connectedSince(row.mac);
    // Delivered when the device next connects; a running upgrade still times out meanwhile.
    if (since === null) return upgrading ? Math.min(deadline, expiresAt) : expiresAt;
    const due = row.state === 'queued' || delivered === null || now >= deadline || since > delivered;
    if (!due) return Math.min(deadline, expiresAt);

    if (row.attempts >= this.opts.maxAttempts) {
      await this.finish(row, 'failed', { code: 'no_answer', message: `the device did not answer ${row.attempts} deliveries` }, undefined, 'engine');
      return null;
    }
    const command = await this.command(row);
    if (!command) {
      await this.finish(row, 'failed', { code: 'device_deleted', message: 'the device no longer exists' }, undefined, 'engine');
      return null;
    }
    const backoff = Math.min(this.opts.ackTimeoutMs * 2 ** row.attempts, MAX_ACK_BACKOFF_MS);
    const newDeadline = new Date(Date.now() + (row.state === 'in-progress' ? this.opts.inProgressTimeoutMs : backoff));
    const updated = await this.q.dispatch.execute({
      id: row.id,
      state: row.state === 'queued' ? 'dispatched' : row.state,
      attempts: row.attempts,
      nextAttempts: row.attempts + 1,
      now: new Date(),
      deadline: newDeadline,
    });
    if (!updated[0]) return Date.now(); // changed under us: look again at once
    // Recorded before publishing: a fast device's answer must not reach the audit log before its delivery.
    await this.audit('engine', row.attempts === 0 ? 'job.dispatched' : 'job.redelivered', row, { attempt: row.attempts + 1 });
    await this.opts.channel.publish(row.mac, command);
    return Math.min(newDeadline.getTime(), expiresAt);
  }

  private async command(row: JobRow): Promise<DeviceCommand | null> {
    const base: DeviceCommand = { id: row.id, kind: row.kind, params: row.params, expiresAt: row.expiresAt.toISOString() };
    if (row.kind === 'upgrade') {
      const firmwareId = String(row.params.firmwareId);
      return { ...base, params: { ...row.params, url: this.opts.firmwareUrl?.(firmwareId) ?? `/firmware/${firmwareId}/image` } };
    }
    if (!CONFIG_KINDS.includes(row.kind)) return base;
    const config = await this.effectiveConfig(row.mac);
    if (!config) return null;
    return { ...base, config: config.text, configHash: config.hash };
  }

  /** The device's effective configuration: record, regular Autop, pending one-time Autop. */
  async effectiveConfig(mac: string): Promise<{ text: string; hash: string } | null> {
    const sources = await this.q.configSources.execute({ mac });
    const device = await this.opts.devices.getRecord(mac);
    if (!device) return null;
    const regular = [{ lines: sources[0]?.regular ?? [] }];
    const once = (sources[0]?.once ?? []).map((params) => ({ params }));
    return renderConfig({
      mac,
      name: device.name,
      location: device.location,
      networkGroup: device.networkGroup,
      relays: device.relays,
      sipNumber: device.sipNumber,
      sipPassword: device.sipPassword,
      connectType: device.connectType,
      regularAutop: regular[0]?.lines ?? [],
      pendingOnce: once.flatMap((o) => (o.params.lines as AutopLine[] | undefined) ?? []),
    });
  }

  /** Finishes an unfinished job; `unlessUpgrade` leaves an upgrade alone (a device's word does not end it). */
  private async finish(row: Pick<JobRow, 'id' | 'mac' | 'batchId'>, state: JobState, error: { code: string; message: string } | null, progress?: number, actor = 'device', unlessUpgrade = false) {
    const values = { id: row.id, mac: row.mac, state, error: error ? JSON.stringify(error) : null, progress: progress ?? null };
    const done = await (unlessUpgrade ? this.q.finishUnlessUpgrade : this.q.finish).execute(values);
    if (!done[0]) return false;
    await this.audit(actor, `job.${state}`, { ...row, batchId: done[0].batchId }, error ? { error } : {});
    this.log.info({ jobId: row.id, mac: row.mac, state }, 'job finished');
    return true;
  }

  private async audit(actor: string, action: string, row: Pick<JobRow, 'id' | 'mac' | 'batchId'>, details: Record<string, unknown>) {
    await this.q.audit.execute({ actor, action, mac: row.mac, jobId: row.id, batchId: row.batchId, details: JSON.stringify(details) });
  }

  // ---- events from the gateway -------------------------------------------------------------------

  /** A device is connected and has said hello (or its grace period passed): deliver what waits for it. */
  async deviceConnected(mac: string): Promise<void> {
    await this.wake(mac);
  }

  /**
   * A device said hello. A device that had been provisioned and now reports the factory configuration was
   * reset: its one-time Autop from before ends. A configuration hash other than the effective one queues a
   * provisioning job unless one that delivers the configuration is already waiting.
   */
  async deviceHello(mac: string, hello: HelloFacts): Promise<void> {
    if (hello.firmware) await this.upgradeHello(mac, hello.firmware);
    const reported = hello.configHash ?? FACTORY_CONFIG_HASH;
    const exchanged = await this.opts.devices.exchangeConfigHash(mac, reported);
    if (!exchanged) return; // a MAC without a device record
    if (reported === FACTORY_CONFIG_HASH && exchanged.previous && exchanged.previous !== FACTORY_CONFIG_HASH) {
      const canceled = await this.cancelOneTimeAutop(mac, 'the device was reset');
      if (canceled.length) this.log.info({ mac, canceled: canceled.length }, 'device came back reset; its one-time Autop ended');
      await this.settle(canceled);
    }
    const effective = await this.effectiveConfig(mac);
    if (effective && effective.hash !== reported) {
      const pending = await this.opts.db
        .select({ id: jobs.id })
        .from(jobs)
        .where(and(eq(jobs.mac, mac), inArray(jobs.kind, CONFIG_KINDS), UNFINISHED))
        .limit(1);
      if (!pending[0]) {
        const device = await this.opts.devices.getRecord(mac);
        const [created] = await this.opts.db
          .insert(jobs)
          .values({ kind: 'provision', mac, installerId: device!.installerId, params: {}, expiresAt: new Date(Date.now() + 24 * 3600_000) })
          .returning();
        await this.audit('device', 'job.created', created!, { kind: 'provision', reason: 'configuration hash differs', reported });
        await this.enqueue([created!.id]);
      }
    }
  }

  /**
   * The hello after an upgrade decides it: the target version is success (whatever stage the device was
   * in, even undelivered); another version after installing or rebooting means it came back on the old one.
   */
  private async upgradeHello(mac: string, firmware: string): Promise<void> {
    const rows = await this.q.unfinishedUpgrades.execute({ mac });
    for (const row of rows) {
      const target = String(row.params.version);
      let finished = false;
      if (firmware === target) finished = await this.finish(row, 'succeeded', null, 100, 'device');
      else if (row.state === 'in-progress' && AWAITING_HELLO.includes(row.stage)) {
        finished = await this.finish(row, 'failed', { code: 'old_version', message: `the device came back on ${firmware} instead of ${target}` }, undefined, 'device');
      }
      if (finished) {
        this.log.info({ mac, jobId: row.id, firmware, target }, 'upgrade ended by the hello');
        await this.afterFinish(row);
      }
    }
  }

  /** Ends a device's one-time Autop that has not been applied (reset requested or detected). */
  async cancelOneTimeAutop(mac: string, reason: string, tx: Pick<Db, 'update' | 'insert'> = this.opts.db): Promise<string[]> {
    const rows = await tx
      .update(jobs)
      .set({ state: 'canceled', error: { code: 'reset', message: reason }, finishedAt: new Date(), updatedAt: new Date() })
      .where(and(eq(jobs.mac, mac), eq(jobs.kind, 'autop-once'), UNFINISHED))
      .returning({ id: jobs.id, batchId: jobs.batchId });
    if (rows.length) {
      await tx.insert(auditLog).values(rows.map((r) => ({ actor: 'engine', action: 'job.canceled', mac, jobId: r.id, batchId: r.batchId, details: { reason } })));
    }
    return rows.map((r) => r.id);
  }

  /** Lets the BullMQ jobs of jobs finished outside the worker complete now instead of at their expiry. */
  async settle(ids: string[]): Promise<void> {
    await Promise.all(ids.map((id) => this.promote(id).catch(() => {})));
  }

  /** A device answered on devices/{MAC}/commands/{id}/status. */
  async deviceStatus(mac: string, jobId: string, payload: Buffer): Promise<void> {
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      this.log.warn({ mac, jobId }, 'command status ignored: not JSON');
      return;
    }
    const parsed = deviceStatusSchema.safeParse(json);
    if (!parsed.success || !/^[0-9a-f-]{36}$/.test(jobId)) {
      this.log.warn({ mac, jobId: jobId.slice(0, 64) }, 'command status ignored: invalid');
      return;
    }
    const status = parsed.data;
    // Conditional updates on (id, MAC): an answer for another device's job, an unknown job or a finished
    // one (late or repeated) changes nothing.
    if (status.state === 'accepted' || status.state === 'in-progress') {
      await this.q.progress.execute({ id: jobId, mac, progress: status.progress ?? null, stage: status.stage ?? null, deadline: new Date(Date.now() + this.opts.inProgressTimeoutMs) });
      return;
    }
    const row = { id: jobId, mac, batchId: null };
    // An upgrade succeeds only by the hello with the new version, never by the device's word alone.
    const finished =
      status.state === 'succeeded'
        ? await this.finish(row, 'succeeded', null, 100, 'device', true)
        : await this.finish(row, 'failed', status.error ?? { code: 'device_failed', message: 'the device reported failure' });
    if (status.configHash) await this.opts.devices.exchangeConfigHash(mac, status.configHash);
    if (finished) await this.afterFinish(row);
  }

  /** Completes the finished job's BullMQ job and hands the device to its next job. */
  async afterFinish(row: Pick<JobRow, 'id' | 'mac'>): Promise<void> {
    await this.promote(row.id);
    await this.wake(row.mac);
  }

  async cancel(row: JobRow, actor: string): Promise<boolean> {
    const done = await this.finish(row, 'canceled', { code: 'canceled', message: 'canceled by request' }, undefined, actor);
    if (done) await this.afterFinish(row);
    return done;
  }

  /** Jobs waiting in BullMQ (for the benchmark and operators). */
  async queueCounts() {
    return this.queue.getJobCounts('waiting', 'delayed', 'active', 'completed', 'failed');
  }
}
