/**
 * Group commit: single requests that arrive together (one turn of the event loop, or while earlier
 * batches are running) go to the database as one statement. Under no load a request runs at once, alone;
 * under load, batches grow to what arrived meanwhile: fewer round trips, each carrying more.
 */
export interface GroupCommitOptions<I> {
  /** The largest batch (500 rows by default). */
  maxBatch?: number;
  /** Batches running at once, 4 by default (the pool has more); what arrives meanwhile waits for the next. */
  maxInFlight?: number;
  /**
   * Requests with the same key never share a batch (one statement changes a row once), and one waits
   * until the batch holding an earlier one has finished: the second sees the first.
   */
  key?: (item: I) => string;
}

interface Waiting<I, O> {
  item: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

export class GroupCommit<I, O> {
  private waiting: Waiting<I, O>[] = [];
  private inFlight = 0;
  /** Keys of the batches running now. */
  private readonly running = new Set<string>();
  private scheduled = false;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;

  /** `run` answers one output per item, in the items' order. */
  constructor(
    private readonly run: (items: I[]) => Promise<O[]>,
    private readonly opts: GroupCommitOptions<I> = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxInFlight = opts.maxInFlight ?? 4;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // The rest of this turn's I/O (a burst of device answers) joins the batch.
        setImmediate(() => {
          this.scheduled = false;
          this.drain();
        });
      }
    });
  }

  /**
   * One statement for the batch; when it fails, each request alone, so one that cannot be written (a
   * device's answer the database refuses) fails by itself and never takes the others down with it.
   */
  private async runBatch(batch: Waiting<I, O>[]): Promise<void> {
    try {
      const outs = await this.run(batch.map((w) => w.item));
      batch.forEach((w, i) => w.resolve(outs[i]!));
    } catch (err) {
      if (batch.length === 1) return batch[0]!.reject(err);
      await Promise.all(
        batch.map((w) =>
          this.run([w.item]).then(
            (outs) => w.resolve(outs[0]!),
            (e: unknown) => w.reject(e),
          ),
        ),
      );
    }
  }

  private drain(): void {
    while (this.waiting.length && this.inFlight < this.maxInFlight) {
      const batch: Waiting<I, O>[] = [];
      const later: Waiting<I, O>[] = [];
      const keys = new Set<string>();
      for (const w of this.waiting) {
        const key = this.opts.key?.(w.item);
        if (batch.length >= this.maxBatch || (key !== undefined && (keys.has(key) || this.running.has(key)))) later.push(w);
        else {
          batch.push(w);
          if (key !== undefined) keys.add(key);
        }
      }
      this.waiting = later;
      if (!batch.length) return; // every one waits for a running batch of its key
      for (const key of keys) this.running.add(key);
      this.inFlight++;
      this.runBatch(batch)
        .finally(() => {
          for (const key of keys) this.running.delete(key);
          this.inFlight--;
          this.drain();
        });
    }
  }
}
