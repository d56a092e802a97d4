/**
 * Per device, how many events it may publish on devices/{MAC}/events: a token bucket of `perMinute`
 * tokens, refilled evenly over a minute, so a burst of up to `perMinute` passes and a steady flood is cut
 * to `perMinute` a minute. Kept in the process holding the device's session (one at a time): a device that
 * reconnects elsewhere starts a fresh bucket, which costs it a CONNECT each time. A bucket that is full
 * again is forgotten.
 */
export class DeviceEventLimiter {
  /** The clock (tests pin it). */
  now: () => number = () => Date.now();
  /** Events refused since start, for tests and logs (the metric counts them too). */
  dropped = 0;
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly perMinute: number) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  private refilled(bucket: { tokens: number; at: number }, now: number): number {
    return Math.min(this.perMinute, bucket.tokens + ((now - bucket.at) * this.perMinute) / 60_000);
  }

  /** Whether the device may publish one more event now (a token is taken when it may). */
  take(mac: string): boolean {
    const now = this.now();
    const bucket = this.buckets.get(mac);
    const tokens = bucket ? this.refilled(bucket, now) : this.perMinute;
    if (tokens < 1) {
      this.dropped++;
      // Time spent refused still refills: keep the fraction, move the clock.
      this.buckets.set(mac, { tokens, at: now });
      return false;
    }
    this.buckets.set(mac, { tokens: tokens - 1, at: now });
    return true;
  }

  private sweep(): void {
    const now = this.now();
    for (const [mac, bucket] of this.buckets) if (this.refilled(bucket, now) >= this.perMinute) this.buckets.delete(mac);
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
