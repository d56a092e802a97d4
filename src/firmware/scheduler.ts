import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { DrivenQueue } from '../infra/driven-queue.js';
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
  private readonly driven: DrivenQueue;
  private readonly log: Logger;

  constructor(private readonly opts: SchedulerOptions) {
    this.log = opts.logger.child({ component: 'upgrade-scheduler' });
    this.driven = new DrivenQueue({
      name: QUEUE,
      redis: opts.redis,
      prefix: opts.queuePrefix,
      queueTimeoutMs: opts.queueTimeoutMs,
      reconcileIntervalMs: opts.reconcileIntervalMs,
      log: this.log,
      what: 'the upgrade schedule',
      process: async (job) => this.opts.fire((job.data as { id: string }).id),
      concurrency: 4,
      reconcile: () => this.reconcile(),
      failed: (job, err) => this.log.error({ upgradeId: job?.data?.id, err: err.message }, 'starting an upgrade failed; it is tried again'),
    });
  }

  private get queue(): Queue {
    return this.driven.queue;
  }

  // The time is part of the id: a rescheduled upgrade gets a new job even while its old one is running
  // (and cannot be removed); the old one then finds the upgrade not yet due and starts nothing.
  private static jobId = (upgradeId: string, at: Date) => `upgrade-${upgradeId}-${at.getTime()}`;

  start(): Promise<void> {
    return this.driven.start();
  }

  /** Stops the worker and the queue; safe to call after a failed start. */
  stop(): Promise<void> {
    return this.driven.stop();
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

  /**
   * Brings the schedule in line with a change just committed (an upgrade made, moved or started now). A
   * Redis that does not answer is logged, not thrown: PostgreSQL holds the change, and reconciliation
   * makes the schedule again when Redis is back. A stale start left behind finds the upgrade not due (or
   * gone) and starts nothing.
   */
  async follow(upgradeId: string, change: { from?: Date; to?: Date }): Promise<void> {
    try {
      // A job already running cannot be removed; it finds the upgrade changed and does nothing.
      if (change.from) await this.queue.remove(UpgradeScheduler.jobId(upgradeId, change.from));
      if (change.to) await this.schedule(upgradeId, change.to);
    } catch (err) {
      this.log.warn({ upgradeId, err: (err as Error).message }, 'the schedule in Redis was not updated; reconciliation will');
    }
  }
}
