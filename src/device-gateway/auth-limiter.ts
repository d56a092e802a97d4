/**
 * Counts failed authentications per source address *and* user name (the MAC a device claims; the caller
 * counts names that are no MAC of the library together) in a fixed one-minute window. Over the limit,
 * that name from that address is refused without checking credentials until the window ends, so guessing
 * a key is slow and a misconfigured device cannot flood the logs; every other device behind the same
 * address (a site's NAT) connects as usual.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number; announced: boolean }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limitPerMinute: number,
    private readonly windowMs = 60_000,
    /** Windows kept at most: a flood of invented user names evicts the oldest instead of growing memory. */
    private readonly maxWindows = 100_000,
  ) {
    this.sweeper = setInterval(() => this.sweep(), windowMs).unref();
  }

  private static key(address: string, user: string) {
    return `${address}\u0000${user}`;
  }

  isBlocked(address: string, user: string, now = Date.now()): boolean {
    const w = this.windows.get(AuthFailureLimiter.key(address, user));
    return !!w && now - w.start < this.windowMs && w.failures >= this.limitPerMinute;
  }

  /** Records a failure; returns true the first time this address and user name cross the limit in this window. */
  recordFailure(address: string, user: string, now = Date.now()): boolean {
    const key = AuthFailureLimiter.key(address, user);
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.windowMs) {
      if (!w && this.windows.size >= this.maxWindows) this.windows.delete(this.windows.keys().next().value!);
      w = { start: now, failures: 0, announced: false };
      this.windows.set(key, w);
    }
    w.failures++;
    if (w.failures >= this.limitPerMinute && !w.announced) {
      w.announced = true;
      return true;
    }
    return false;
  }

  private sweep(now = Date.now()) {
    for (const [key, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(key);
  }

  close() {
    clearInterval(this.sweeper);
  }
}
