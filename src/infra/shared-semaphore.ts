import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

/** One taken slot. `release` gives it back; calling it again does nothing. */
export interface Permit {
  release(): void;
}

/** At most `capacity` permits out at once; `acquire` answers null when none is free. */
export interface Semaphore {
  readonly capacity: number;
  /** Permits this process holds now. */
  readonly held: number;
  acquire(): Promise<Permit | null>;
  /** Gives back the permits still held and closes the Redis connection. */
  close(): Promise<void>;
}

export interface SharedSemaphoreOptions {
  capacity: number;
  /** The deployment's Redis; without it the permits are counted in this process only. */
  redis?: Redis;
  /** The sorted set of leases (member: a random id, score: when the lease expires, ms since the epoch). */
  key?: string;
  /** A lease not renewed for this long is gone: the slots of a process that died free themselves. */
  leaseMs?: number;
  /** How often the leases of held permits are renewed. */
  renewMs?: number;
  /** Longer than this without an answer from Redis, the permit is decided by this process's own count. */
  timeoutMs?: number;
  log?: Logger;
  /** The clock lease expiries are measured by (tests). */
  now?: () => number;
}

// Drops the expired leases, then takes one if fewer than the capacity remain.
// KEYS[1] the set; ARGV: now, capacity, expiry of the new lease, its member, the set's time to live (ms).
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
`;

type WithAcquire = Redis & { semaphoreAcquire(key: string, now: number, capacity: number, expiry: number, member: string, ttlMs: number): Promise<number> };

class Timeout extends Error {}

/** Connection states in which Redis is known not to answer now. */
const AWAY = new Set(['reconnecting', 'close', 'end']);

/**
 * A counting semaphore shared by every process on one Redis: a sorted set of leases, taken atomically by a
 * Lua script, each released (ZREM) exactly once and renewed while held, so that a process that dies without
 * releasing loses its slots when their leases run out. When Redis errs or does not answer within
 * `timeoutMs`, the permit is decided by this process's own count against the same capacity (each process
 * then caps itself alone) and that is logged once until Redis answers again.
 */
export class SharedSemaphore implements Semaphore {
  readonly capacity: number;
  private readonly key: string;
  private readonly leaseMs: number;
  private readonly renewMs: number;
  private readonly timeoutMs: number;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private readonly redis: WithAcquire | null;
  /** Every permit held here; the value is its lease's member in Redis, or null for one counted locally. */
  private readonly permits = new Map<Permit, string | null>();
  private renewer: NodeJS.Timeout | null = null;
  private redisFailing = false;
  private closed = false;

  constructor(opts: SharedSemaphoreOptions) {
    this.capacity = opts.capacity;
    this.key = opts.key ?? 'semaphore';
    this.leaseMs = opts.leaseMs ?? 10 * 60_000;
    this.renewMs = opts.renewMs ?? 60_000;
    this.timeoutMs = opts.timeoutMs ?? 500;
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    if (opts.redis) {
      // A connection of its own that gives up quickly: a request waits for Redis at most timeoutMs anyway.
      const redis = opts.redis.duplicate({ lazyConnect: false, maxRetriesPerRequest: 1, commandTimeout: Math.max(2000, this.timeoutMs * 4) });
      redis.on('error', (err: Error) => this.failed(err));
      redis.on('ready', () => this.recovered());
      redis.defineCommand('semaphoreAcquire', { numberOfKeys: 1, lua: ACQUIRE });
      this.redis = redis as WithAcquire;
    } else {
      this.redis = null;
    }
  }

  get held(): number {
    return this.permits.size;
  }

  async acquire(): Promise<Permit | null> {
    if (this.closed) return null;
    if (!this.redis) return this.acquireLocally();
    // Known to be away: no request waits timeoutMs for it.
    if (AWAY.has(this.redis.status)) return this.acquireLocally();
    const member = randomUUID();
    const now = this.now();
    const taking = this.redis.semaphoreAcquire(this.key, now, this.capacity, now + this.leaseMs, member, this.leaseMs);
    let timer: NodeJS.Timeout | undefined;
    try {
      const took = await Promise.race([taking, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Timeout(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs)))]);
      this.recovered();
      if (took !== 1 || this.closed) {
        if (took === 1) this.remove([member]);
        return null;
      }
      return this.hold(member);
    } catch (err) {
      if (err instanceof Timeout) {
        // A lease taken after all would count against every process until it expired: give it back.
        taking.then((took) => void (took === 1 && this.remove([member])), () => {});
      }
      this.failed(err as Error);
      return this.acquireLocally();
    } finally {
      clearTimeout(timer);
    }
  }

  private acquireLocally(): Permit | null {
    return this.permits.size < this.capacity ? this.hold(null) : null;
  }

  private hold(member: string | null): Permit {
    const permit: Permit = {
      release: () => {
        if (!this.permits.has(permit)) return;
        this.permits.delete(permit);
        if (member) this.remove([member]);
        if (![...this.permits.values()].some((m) => m) && this.renewer) {
          clearInterval(this.renewer);
          this.renewer = null;
        }
      },
    };
    this.permits.set(permit, member);
    if (member && !this.renewer) {
      this.renewer = setInterval(() => this.renew(), this.renewMs);
      this.renewer.unref();
    }
    return permit;
  }

  /** Moves the expiry of every lease held here one lease ahead (only leases still present: XX). */
  private renew() {
    if (!this.redis) return;
    const members = [...this.permits.values()].filter((m): m is string => !!m);
    if (!members.length) return;
    const expiry = this.now() + this.leaseMs;
    this.redis
      .multi()
      .zadd(this.key, 'XX', ...members.flatMap((m) => [expiry, m]))
      .pexpire(this.key, this.leaseMs)
      .exec()
      .then(() => this.recovered(), (err: Error) => this.failed(err));
  }

  private remove(members: string[]) {
    this.redis?.zrem(this.key, ...members).then(
      () => this.recovered(),
      (err: Error) => this.failed(err),
    );
  }

  private failed(err: Error) {
    if (this.redisFailing || this.closed) return;
    this.redisFailing = true;
    this.log?.warn({ err: err.message, key: this.key }, 'Redis does not answer; the shared cap is counted per process until it does');
  }

  private recovered() {
    if (!this.redisFailing) return;
    this.redisFailing = false;
    this.log?.info({ key: this.key }, 'Redis answers again; the cap is shared across the processes');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.renewer) clearInterval(this.renewer);
    this.renewer = null;
    const members = [...this.permits.values()].filter((m): m is string => !!m);
    this.permits.clear();
    if (!this.redis) return;
    if (members.length) await this.redis.zrem(this.key, ...members).catch(() => {});
    this.redis.disconnect();
  }
}
