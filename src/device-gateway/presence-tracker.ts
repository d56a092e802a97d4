import { isDataError } from '../db/errors.js';
import type { Logger } from '../logger.js';
import type { PresenceUpdate } from '../devices/presence.js';

/** Where batched presence goes: the devices' status and the MAC library's last-seen time. */
export type PresenceWriter = (updates: PresenceUpdate[]) => Promise<void>;

/**
 * Collects presence changes in memory and writes them in one batch per interval, so the API shows a
 * device online within a fraction of a second while a boot storm costs a few statements, not thousands.
 * A batch the database refuses is split until the refused rows stand alone: those are dropped (and
 * logged), the rest are written, so one device's bad row never holds the others hostage.
 */
export class PresenceTracker {
  private pending = new Map<string, PresenceUpdate>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly write: PresenceWriter,
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
    const batch = [...this.pending.values()];
    this.pending = new Map();
    this.flushing = this.writeIsolated(batch).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /**
   * Writes a batch; when it fails, writes its halves. A database that is down fails every half: then the
   * whole batch goes back into the queue for the next flush instead of being dropped row by row.
   */
  private async writeIsolated(batch: PresenceUpdate[]): Promise<void> {
    try {
      await this.write(batch);
      return;
    } catch (err) {
      if (batch.length === 1) {
        if (isDataError(err)) {
          this.logger.error({ err, mac: batch[0]!.mac }, 'presence of this device could not be written; dropped');
          return;
        }
        this.requeue(batch, err);
        return;
      }
      if (!isDataError(err)) {
        this.requeue(batch, err);
        return;
      }
    }
    const half = Math.ceil(batch.length / 2);
    await this.writeIsolated(batch.slice(0, half));
    await this.writeIsolated(batch.slice(half));
  }

  private requeue(batch: PresenceUpdate[], err: unknown) {
    this.logger.error({ err, devices: batch.length }, 'presence write failed; retrying with the next batch');
    // A change marked since is newer: it wins where it says something, the failed one keeps the rest (a
    // hello's partial mark must not erase the connect it followed).
    for (const update of batch) {
      const newer = this.pending.get(update.mac);
      this.pending.set(update.mac, update);
      if (newer) this.mark(newer);
    }
  }

  /**
   * Resolves once every change marked before the call has been written (or kept for the next batch when
   * the database is away): a flush under way took only what was pending when it began.
   */
  async flushed(): Promise<void> {
    if (this.flushing) await this.flushing;
    await this.flush();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flushed();
  }
}
