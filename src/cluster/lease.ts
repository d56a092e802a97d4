import type { Redis } from 'ioredis';

const HOLD = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

/**
 * A lease in Redis: work that must run in one process of the cluster at a time (the directory follower,
 * the sweep of dead gateways) asks `held()` before each pass; the holder renews it by asking, and a
 * holder that dies lets it lapse after `ttlMs`.
 */
export class RedisLease {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly holder: string,
    private readonly ttlMs: number,
  ) {}

  async held(): Promise<boolean> {
    return (await this.redis.eval(HOLD, 1, this.key, this.holder, String(this.ttlMs))) === 1;
  }
}
