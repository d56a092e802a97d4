/**
 * Counts failed authentications per source address in a fixed one-minute window; an address over the
 * limit is refused without checking credentials until the window ends, so guessing keys is slow and
 * a misconfigured fleet behind one NAT cannot flood the logs.
 */
export class AuthFailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number; announced: boolean }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limitPerMinute: number,
    private readonly windowMs = 60_000,
  ) {
    this.sweeper = setInterval(() => this.sweep(), windowMs).unref();
  }

  private window(address: string, now: number) {
    let w = this.windows.get(address);
    if (!w || now - w.start >= this.windowMs) {
      w = { start: now, failures: 0, announced: false };
      this.windows.set(address, w);
    }
    return w;
  }

  isBlocked(address: string, now = Date.now()): boolean {
    const w = this.windows.get(address);
    return !!w && now - w.start < this.windowMs && w.failures >= this.limitPerMinute;
  }

  /** Records a failure; returns true the first time the address crosses the limit in this window. */
  recordFailure(address: string, now = Date.now()): boolean {
    const w = this.window(address, now);
    w.failures++;
    if (w.failures >= this.limitPerMinute && !w.announced) {
      w.announced = true;
      return true;
    }
    return false;
  }

  private sweep(now = Date.now()) {
    for (const [address, w] of this.windows) if (now - w.start >= this.windowMs) this.windows.delete(address);
  }

  close() {
    clearInterval(this.sweeper);
  }
}
