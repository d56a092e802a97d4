import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

// The engine's BullMQ twins and wake-up counters: how a job's twin is made, found missing and woken.

/**
 * Counts wake-ups per device, so a worker about to park a job notices a wake it raced with, wherever
 * that wake came from.
 */
export interface WakeGenerations {
  bump(mac: string): Promise<void>;
  current(mac: string): Promise<number>;
}

export class LocalWakeGenerations implements WakeGenerations {
  private readonly counts = new Map<string, number>();
  async bump(mac: string): Promise<void> {
    this.counts.set(mac, (this.counts.get(mac) ?? 0) + 1);
  }
  async current(mac: string): Promise<number> {
    return this.counts.get(mac) ?? 0;
  }
}

/** The queue did not take the jobs in time; they are recorded and run once reconciliation re-adds them. */
export class QueueUnavailableError extends Error {
  override name = 'QueueUnavailableError';
}

/** A twin is removed when done; one that keeps failing is removed too, and reconciliation makes it again. */
export const twinOptions = (id: string) => ({ jobId: id, removeOnComplete: true, removeOnFail: true, attempts: 3, backoff: { type: 'exponential', delay: 1000 } });

export function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The ids among `ids` (unfinished jobs) whose twin is missing (Redis lost it) or finished (it failed after
 * its retries; removed here): their twins must be made again.
 */
export async function twinsToMake(queue: Queue, client: Redis, ids: string[], timeoutMs: number): Promise<string[]> {
  await withTimeout(queue.waitUntilReady(), timeoutMs);
  const readd: string[] = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const chunk = ids.slice(i, i + 1000);
    const pipeline = client.pipeline();
    for (const id of chunk) pipeline.hmget(queue.toKey(id), 'timestamp', 'finishedOn');
    const results = (await withTimeout(pipeline.exec(), timeoutMs)) ?? [];
    for (const [k, [err, fields]] of results.entries()) {
      if (err) throw err;
      const [timestamp, finishedOn] = fields as [string | null, string | null];
      const id = chunk[k]!;
      if (timestamp === null) readd.push(id);
      else if (finishedOn !== null) {
        await queue.remove(id);
        readd.push(id);
      }
    }
  }
  return readd;
}
