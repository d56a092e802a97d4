import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

export interface SchedulerOptions {
  /** A Redis connection to copy: the queue and the worker each get their own. */
  redis: Redis;
  /** Namespace of this deployment's queues in Redis (derived from its database). */
  queuePrefix: string;
  logger: Logger;
  /** Starts an upgrade (a conditional update: a second firing starts nothing). */
  fire: (upgradeId: string) => Promise<void>;
  /** The pending upgrades and their times, from PostgreSQL. */
  pending: () => Promise<{ id: string; at: Date }[]>;
  /** How long a request waits for Redis before it answers 503. */
  queueTimeoutMs: number;
  /** How often the schedule in Redis is made again from PostgreSQL (besides at start and when Redis is back). */
  reconcileIntervalMs: number;
}

const QUEUE = 'upgrades';

/**
 * Starts upgrades at their time. Each pending upgrade is one delayed BullMQ job; starting is a conditional
 * update in PostgreSQL, so a job that fires twice (or after its upgrade was rescheduled or deleted) starts
 * nothing twice. PostgreSQL is the truth: the schedule is made again from it at start, whenever Redis comes
 * back (it keeps nothing on disk) and periodically.
 */
export class UpgradeScheduler {
  private queue!: Queue;
  private worker!: Worker;
  private queueConnection: Redis | null = null;
  private workerConnection: Redis | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reconciling: Promise<void> | null = null;
  private readonly log: Logger;

  constructor(private readonly opts: SchedulerOptions) {
    this.log = opts.logger.child({ component: 'upgrade-scheduler' });
  }

  // The time is part of the id: a rescheduled upgrade gets a new job even while its old one is running
  // (and cannot be removed); the old one then finds the upgrade not yet due and starts nothing.
  private static jobId = (upgradeId: string, at: Date) => `upgrade-${upgradeId}-${at.getTime()}`;

  async start(): Promise<void> {
    this.queueConnection = this.opts.redis.duplicate({ enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: this.opts.queueTimeoutMs });
    this.queueConnection.on('error', () => {});
    this.queue = new Queue(QUEUE, { connection: this.queueConnection, prefix: this.opts.queuePrefix });
    this.queue.on('error', (err) => this.log.warn({ err: err.message }, 'upgrade schedule queue error'));
    this.workerConnection = this.opts.redis.duplicate();
    this.workerConnection.on('error', () => {});
    this.worker = new Worker(QUEUE, async (job) => this.opts.fire((job.data as { id: string }).id), {
      connection: this.workerConnection,
      prefix: this.opts.queuePrefix,
      concurrency: 4,
      maxStalledCount: 1000,
    });
    this.worker.on('error', (err) => this.log.warn({ err: err.message }, 'upgrade scheduler error'));
    this.worker.on('failed', (job, err) => this.log.error({ upgradeId: job?.data?.id, err: err.message }, 'starting an upgrade failed; it is tried again'));
    await this.reconcile();
    let first = this.queueConnection.status !== 'ready';
    this.queueConnection.on('ready', () => {
      if (first) return void (first = false);
      this.log.info('Redis is back; scheduling the pending upgrades again');
      void this.reconcileSafely();
    });
    this.timer = setInterval(() => void this.reconcileSafely(), this.opts.reconcileIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.reconciling;
    await this.worker?.close();
    await this.queue?.close();
    this.queueConnection?.disconnect();
    this.workerConnection?.disconnect();
  }

  private reconcileSafely(): Promise<void> {
    this.reconciling ??= this.reconcile()
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'could not schedule the pending upgrades; tried again at the next period'))
      .finally(() => {
        this.reconciling = null;
      });
    return this.reconciling;
  }

  /** Schedules every pending upgrade again; one already scheduled for its time keeps its job. */
  async reconcile(): Promise<void> {
    for (const p of await this.opts.pending()) await this.schedule(p.id, p.at);
  }

  /** Adds the start of an upgrade; an upgrade already scheduled for that time keeps its job. */
  async schedule(upgradeId: string, at: Date): Promise<void> {
    await this.queue.add(
      'start',
      { id: upgradeId },
      {
        jobId: UpgradeScheduler.jobId(upgradeId, at),
        delay: Math.max(0, at.getTime() - Date.now()),
        removeOnComplete: true,
        removeOnFail: true,
        attempts: 10,
        backoff: { type: 'exponential', delay: 1000 },
      },
    );
  }

  async reschedule(upgradeId: string, from: Date, to: Date): Promise<void> {
    await this.unschedule(upgradeId, from);
    await this.schedule(upgradeId, to);
  }

  async unschedule(upgradeId: string, at: Date): Promise<void> {
    // A job already running cannot be removed; it finds the upgrade changed and does nothing.
    await this.queue.remove(UpgradeScheduler.jobId(upgradeId, at)).catch(() => 0);
  }
}
