import type { Logger } from '../logger.js';
import type { PresenceStore, PresenceUpdate } from '../devices/presence.js';

/**
 * Collects presence changes in memory and writes them in one batch per interval, so the API shows a
 * device online within a fraction of a second while a boot storm costs a few statements, not thousands.
 */
export class PresenceTracker {
  private pending = new Map<string, PresenceUpdate>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly store: PresenceStore,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  start() {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Merges a change into what is waiting for this device: later values win, absent ones keep earlier. */
  mark(update: PresenceUpdate) {
    const prev = this.pending.get(update.mac);
    if (!prev) {
      this.pending.set(update.mac, update);
      return;
    }
    for (const [k, v] of Object.entries(update)) if (v !== undefined) (prev as unknown as Record<string, unknown>)[k] = v;
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (!this.pending.size) return;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.store
      .apply([...batch.values()])
      .catch((err: unknown) => {
        this.logger.error({ err, devices: batch.size }, 'presence write failed; retrying with the next batch');
        for (const [mac, update] of batch) if (!this.pending.has(mac)) this.pending.set(mac, update);
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.flushing) await this.flushing;
    await this.flush();
  }
}
