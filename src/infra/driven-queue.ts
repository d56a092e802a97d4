import { Queue, Worker, type Job, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { queueConnections, Reconciler } from './queue-connections.js';

export interface DrivenQueueOptions {
  name: string;
  /** A Redis connection to copy: the queue and the worker each get their own. */
  redis: Redis;
  /** Namespace of this deployment's queues in Redis (derived from its database). */
  prefix: string;
  /** How long a command to the queue's connection may take before it fails. */
  queueTimeoutMs: number;
  /** How often Redis is reconciled with PostgreSQL (besides at start and whenever Redis comes back). */
  reconcileIntervalMs: number;
  log: Logger;
  /** What is reconciled, for the log. */
  what: string;
  /** The worker's step; absent, this process only adds to the queue (no worker, no reconciliation). */
  process?: Processor;
  concurrency?: number;
  /** Makes Redis agree with PostgreSQL again (PostgreSQL is the truth; Redis keeps nothing on disk). */
  reconcile: () => Promise<unknown>;
  /** A BullMQ job that failed for good (logged by the owner, in its words). */
  failed: (job: Job | undefined, err: Error) => void;
}

/**
 * The lifecycle the provisioning engine and the upgrade scheduler share: a BullMQ queue on a fail-fast
 * connection, a worker on its own connection, a reconciliation at start, whenever Redis comes back and
 * periodically, and a stop that is safe after a start that failed halfway.
 */
export class DrivenQueue {
  queue!: Queue;
  private worker: Worker | null = null;
  private connections: ReturnType<typeof queueConnections> | null = null;
  private readonly reconciler: Reconciler;

  constructor(private readonly opts: DrivenQueueOptions) {
    this.reconciler = new Reconciler(opts.reconcile, { intervalMs: opts.reconcileIntervalMs, log: opts.log, what: opts.what });
  }

  /** The queue's own (fail-fast) connection, for pipelines of reads. */
  get client(): Redis {
    return this.connections!.queue;
  }

  async start(): Promise<void> {
    const connections = queueConnections(this.opts.redis, this.opts.queueTimeoutMs);
    this.connections = connections;
    this.queue = new Queue(this.opts.name, { connection: connections.queue, prefix: this.opts.prefix });
    this.queue.on('error', (err) => this.opts.log.warn({ err: err.message }, `${this.opts.name} queue error`));
    if (!this.opts.process) return;
    this.worker = new Worker(this.opts.name, this.opts.process, {
      connection: connections.worker,
      prefix: this.opts.prefix,
      concurrency: this.opts.concurrency ?? 1,
      // A job whose worker died is put back, however often: reconciliation is the backstop, not failure.
      maxStalledCount: 1000,
    });
    this.worker.on('error', (err) => this.opts.log.warn({ err: err.message }, `${this.opts.name} worker error`));
    this.worker.on('failed', (job, err) => this.opts.failed(job, err));
    await this.opts.reconcile();
    this.reconciler.watch(connections.queue);
  }

  /** Stops the reconciler, the worker and the queue; safe to call after a failed start. */
  async stop(): Promise<void> {
    await this.reconciler.stop();
    await this.worker?.close();
    await this.queue?.close();
    this.connections?.close();
  }
}
