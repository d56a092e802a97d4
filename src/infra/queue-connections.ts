import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

/**
 * The two Redis connections a BullMQ queue with its worker needs. The queue's connection fails fast
 * (no offline buffering, a command timeout) so a request never hangs on a Redis that is away; the worker
 * blocks on a connection of its own, which waits for Redis as long as it takes.
 */
export function queueConnections(redis: Redis, timeoutMs: number): { queue: Redis; worker: Redis; close(): void } {
  const queue = redis.duplicate({ enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: timeoutMs });
  const worker = redis.duplicate();
  // Connection errors are reported by BullMQ through the queue and worker; these only keep ioredis quiet.
  queue.on('error', () => {});
  worker.on('error', () => {});
  return {
    queue,
    worker,
    close: () => {
      queue.disconnect();
      worker.disconnect();
    },
  };
}

/**
 * Runs a reconciliation of Redis against PostgreSQL: when asked, periodically, and whenever Redis comes
 * back after a disconnect (it keeps nothing on disk, so it may come back empty). One run at a time; a
 * failed run is logged and the next period tries again.
 */
export class Reconciler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly run: () => Promise<unknown>,
    private readonly opts: { intervalMs: number; log: Logger; what: string },
  ) {}

  /** Starts the period and watches `connection` for Redis coming back. */
  watch(connection: Redis): void {
    let connected = connection.status === 'ready';
    connection.on('ready', () => {
      if (!connected) {
        connected = true;
        return;
      }
      this.opts.log.info(`Redis is back; reconciling ${this.opts.what}`);
      void this.trigger();
    });
    this.timer = setInterval(() => void this.trigger(), this.opts.intervalMs);
    this.timer.unref();
  }

  trigger(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.run()
      .then(() => undefined)
      .catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message }, `reconciling ${this.opts.what} failed; the next period tries again`))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
