import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';

/** Where the gateways of one deployment count failures together. */
export interface SharedLimiterStore {
  redis: Redis;
  /** The deployment's key prefix; keys are `${prefix}:auth-fail:…`, notices go on `${prefix}:auth-blocks`. */
  prefix: string;
}

export interface AuthFailureLimiterOptions {
  windowMs?: number;
  /** Windows kept at most: a flood of invented user names evicts the oldest instead of growing memory. */
  maxWindows?: number;
  /** Without it the limiter counts in this process only. */
  shared?: SharedLimiterStore;
  log?: Logger;
}

interface Window {
  /** Start of this process's own count (its first failure in the window). */
  start: number;
  failures: number;
  announced: boolean;
  /** Refused until then because the gateways together crossed the limit (0: not). */
  blockedUntil: number;
}

/** A notice on the blocks channel: this name from this address is refused until `until` (ms since the epoch). */
interface BlockNotice {
  address: string;
  user: string;
  until: number;
}

const REDIS_COMMAND_TIMEOUT_MS = 1000;
const SUBSCRIBE_WAIT_MS = 2000;

/**
 * Counts failed authentications per source address *and* user name (the MAC a device claims; the caller
 * counts names that are no MAC of the library together) in a fixed one-minute window. Over the limit,
 * that name from that address is refused without checking credentials until the window ends, so guessing
 * a key is slow and a misconfigured device cannot flood the logs; every other device behind the same
 * address (a site's NAT) connects as usual.
 *
 * Across gateway processes: `isBlocked` only reads this process's map (no Redis on the connect path).
 * `recordFailure` counts locally as before and also, without waiting, in Redis
 * (`${prefix}:auth-fail:${window}:${address}:${user}`, window = floor(now / windowMs)); the process whose
 * increment reaches the limit publishes a block notice on `${prefix}:auth-blocks`, and every gateway's
 * limiter (subscribed on a connection of its own) refuses that name from that address until the window
 * ends. The local count stays the floor: with Redis away (or none given) each process still limits alone.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, Window>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly windowMs: number;
  private readonly maxWindows: number;
  private readonly shared: SharedLimiterStore | undefined;
  private readonly log: Logger | undefined;
  private readonly channel: string;
  private commands: Redis | null = null;
  private subscriber: Redis | null = null;
  private readonly pending = new Set<Promise<void>>();
  private redisFailing = false;
  private closed = false;

  constructor(
    private readonly limitPerMinute: number,
    opts: AuthFailureLimiterOptions = {},
  ) {
    this.windowMs = opts.windowMs ?? 60_000;
    this.maxWindows = opts.maxWindows ?? 100_000;
    this.shared = opts.shared;
    this.log = opts.log;
    this.channel = `${opts.shared?.prefix ?? ''}:auth-blocks`;
    this.sweeper = setInterval(() => this.sweep(), this.windowMs).unref();
  }

  private static key(address: string, user: string) {
    return `${address}\u0000${user}`;
  }

  /**
   * Opens the two Redis connections of the shared count (commands, and the subscriber for block notices).
   * Never fails: with Redis away the limiter counts locally and joins in when Redis answers.
   */
  async start(): Promise<void> {
    if (!this.shared || this.closed || this.commands) return;
    // Commands fail fast (nobody waits for them, and none may pile up while Redis is away); the
    // subscriber reconnects for as long as it takes and subscribes again by itself.
    this.commands = this.shared.redis.duplicate({ lazyConnect: false, maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS });
    this.subscriber = this.shared.redis.duplicate({ lazyConnect: false, maxRetriesPerRequest: null });
    this.commands.on('error', (err: Error) => this.failed(err));
    this.subscriber.on('error', (err: Error) => this.failed(err));
    this.commands.on('ready', () => this.recovered());
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.onNotice(message);
    });
    const subscribed = this.subscriber.subscribe(this.channel).then(
      () => undefined,
      (err: Error) => this.failed(err),
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([subscribed, new Promise<void>((resolve) => (timer = setTimeout(resolve, SUBSCRIBE_WAIT_MS)))]);
    clearTimeout(timer);
  }

  isBlocked(address: string, user: string, now = Date.now()): boolean {
    const w = this.windows.get(AuthFailureLimiter.key(address, user));
    if (!w) return false;
    return (now - w.start < this.windowMs && w.failures >= this.limitPerMinute) || now < w.blockedUntil;
  }

  /**
   * Records a failure; returns true the first time this address and user name cross the limit in this
   * window in this process (the caller logs it). Crossing it only together with other gateways is logged
   * here, by the one gateway whose failure reached the limit.
   */
  recordFailure(address: string, user: string, now = Date.now()): boolean {
    const key = AuthFailureLimiter.key(address, user);
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      w = this.entry(key, now);
      w.start = now;
      w.failures = 0;
      w.announced = false;
    }
    w.failures++;
    if (this.commands) this.track(this.countShared(this.commands, address, user, now));
    if (w.failures >= this.limitPerMinute && !w.announced) {
      w.announced = true;
      return true;
    }
    return false;
  }

  /** The window entry of a key, made (evicting the oldest when full) if there is none. */
  private entry(key: string, now: number): Window {
    let w = this.windows.get(key);
    if (!w) {
      if (this.windows.size >= this.maxWindows) this.windows.delete(this.windows.keys().next().value!);
      w = { start: now, failures: 0, announced: false, blockedUntil: 0 };
      this.windows.set(key, w);
    }
    return w;
  }

  private async countShared(redis: Redis, address: string, user: string, now: number): Promise<void> {
    const window = Math.floor(now / this.windowMs);
    const windowEnd = (window + 1) * this.windowMs;
    const key = `${this.shared!.prefix}:auth-fail:${window}:${address}:${user}`;
    try {
      // The key lives until its window ends by the clock that named it (plus a margin for clock skew).
      const replies = await redis.multi().incr(key).pexpire(key, windowEnd - now + 1000).exec();
      const [err, count] = replies?.[0] ?? [new Error('transaction aborted'), null];
      if (err) throw err;
      this.recovered();
      if (typeof count !== 'number' || count < this.limitPerMinute) return;
      // Over it, the notice went out when the count reached it; blocking here too covers a notice missed
      // while this gateway's subscriber was reconnecting.
      const notice: BlockNotice = { address, user, until: windowEnd };
      const reachedHere = count === this.limitPerMinute;
      this.block(notice, reachedHere);
      if (reachedHere) await redis.publish(this.channel, JSON.stringify(notice));
    } catch (err) {
      this.failed(err as Error);
    }
  }

  private onNotice(message: string) {
    let notice: Partial<BlockNotice> | null;
    try {
      notice = JSON.parse(message) as Partial<BlockNotice> | null;
    } catch {
      return;
    }
    // A throw here would escape from the subscriber's message event and end the gateway process.
    if (typeof notice !== 'object' || notice === null) return;
    if (typeof notice.address !== 'string' || typeof notice.user !== 'string' || typeof notice.until !== 'number') return;
    this.block(notice as BlockNotice, false);
  }

  private block(notice: BlockNotice, reachedHere: boolean) {
    const w = this.entry(AuthFailureLimiter.key(notice.address, notice.user), notice.until - this.windowMs);
    w.blockedUntil = Math.max(w.blockedUntil, notice.until);
    if (reachedHere && !w.announced) {
      w.announced = true;
      this.log?.warn(
        { ip: notice.address, user: notice.user === '*' ? '(names not in the MAC library)' : notice.user },
        'too many failed authentications from this address across the gateways; refused for the rest of the minute',
      );
    }
  }

  private track(p: Promise<void>) {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /** Resolves when the shared counts of the failures recorded so far have been written (for tests). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }

  private failed(err: Error) {
    if (this.redisFailing || this.closed) return;
    this.redisFailing = true;
    this.log?.warn({ err: err.message }, 'Redis does not answer; failed authentications are limited per gateway process until it does');
  }

  private recovered() {
    if (!this.redisFailing) return;
    this.redisFailing = false;
    this.log?.info('Redis answers again; failed authentications are limited across the gateways');
  }

  private sweep(now = Date.now()) {
    for (const [key, w] of this.windows) if (now - w.start >= this.windowMs && now >= w.blockedUntil) this.windows.delete(key);
  }

  close() {
    this.closed = true;
    clearInterval(this.sweeper);
    this.commands?.disconnect();
    this.subscriber?.disconnect();
    this.commands = this.subscriber = null;
  }
}
