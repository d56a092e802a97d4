import type { Redis } from 'ioredis';
import type { WakeGenerations } from '../provisioning/engine.js';

/**
 * Wake-up counters shared by every process of a cluster: a gateway process wakes a device while an engine
 * process parks its job; the engine reads the counter before deciding and after parking, and promotes
 * again when they differ. One hash field per device.
 */
export class RedisWakeGenerations implements WakeGenerations {
  private readonly key: string;
  constructor(
    private readonly redis: Redis,
    prefix: string,
  ) {
    this.key = `${prefix}:wakes`;
  }

  async bump(mac: string): Promise<void> {
    await this.redis.hincrby(this.key, mac, 1);
  }

  async current(mac: string): Promise<number> {
    return Number((await this.redis.hget(this.key, mac)) ?? 0);
  }
}
