import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

/**
 * Starts upgrades at their time. Each pending upgrade is one delayed BullMQ job, so the schedule lives in
 * Redis and survives restarts of the service; starting is a conditional update in PostgreSQL, so a job
 * that fires twice (or after its upgrade was rescheduled or deleted) starts nothing twice.
 */
export class UpgradeScheduler {
  private queue!: Queue;
  private worker!: Worker;
  private workerConnection: Redis | null = null;
  private readonly log: Logger;

  constructor(
    private readonly opts: { redis: Redis; queueName: string; logger: Logger; fire: (upgradeId: string) => Promise<void> },
  ) {
    this.log = opts.logger.child({ component: 'upgrade-scheduler' });
  }

  // The time is part of the id: a rescheduled upgrade gets a new job even while its old one is running
  // (and cannot be removed); the old one then finds the upgrade not yet due and starts nothing.
  private static jobId = (upgradeId: string, at: Date) => `upgrade-${upgradeId}-${at.getTime()}`;

  async start(pending: { id: string; at: Date }[]): Promise<void> {
    this.queue = new Queue(this.opts.queueName, { connection: this.opts.redis });
    this.workerConnection = this.opts.redis.duplicate();
    this.worker = new Worker(this.opts.queueName, async (job) => this.opts.fire((job.data as { id: string }).id), { connection: this.workerConnection, concurrency: 4 });
    this.worker.on('error', (err) => this.log.error({ err: err.message }, 'upgrade scheduler error'));
    this.worker.on('failed', (job, err) => this.log.error({ upgradeId: job?.data?.id, err: err.message }, 'starting an upgrade failed; BullMQ retries it'));
    // Redis may have lost the schedule (it keeps nothing on disk): every pending upgrade is scheduled again.
    for (const p of pending) await this.schedule(p.id, p.at);
  }

  async stop(): Promise<void> {
    await this.worker?.close();
    await this.queue?.close();
    this.workerConnection?.disconnect();
  }

  /** Adds the start of an upgrade; an upgrade already scheduled for that time keeps its job. */
  async schedule(upgradeId: string, at: Date): Promise<void> {
    await this.queue.add(
      'start',
      { id: upgradeId },
      { jobId: UpgradeScheduler.jobId(upgradeId, at), delay: Math.max(0, at.getTime() - Date.now()), removeOnComplete: true, removeOnFail: 100, attempts: 10, backoff: { type: 'exponential', delay: 1000 } },
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
