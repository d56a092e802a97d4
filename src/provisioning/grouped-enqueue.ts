/**
 * Group commit of job twins: the ids that requests hand in during one turn of the event loop go to the queue
 * together, in one `enqueue` (one BullMQ `addBulk`, one Redis round trip per 1,000), and every request
 * learns the group's outcome. A failed group (Redis did not take it within the queue timeout) fails each of
 * its requests, which answer 503 with their own ids as before; nothing waits longer than one timeout.
 */
export class GroupedEnqueue {
  private group: { ids: string[]; resolve(): void; reject(err: unknown): void }[] = [];
  private scheduled = false;
  /** Groups sent so far, and the ids in them (for tests and metrics). */
  groups = 0;
  grouped = 0;

  constructor(private readonly enqueue: (ids: string[]) => Promise<void>) {}

  /** Resolves once the queue took these ids with the others of this tick; rejects with the group's error. */
  add(ids: string[]): Promise<void> {
    if (!ids.length) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.group.push({ ids, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // setImmediate runs after this turn's I/O callbacks: every request parsed in the turn has joined.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    const group = this.group;
    this.group = [];
    this.scheduled = false;
    const ids = group.flatMap((g) => g.ids);
    this.groups++;
    this.grouped += ids.length;
    this.enqueue(ids).then(
      () => group.forEach((g) => g.resolve()),
      (err: unknown) => group.forEach((g) => g.reject(err)),
    );
  }
}
