/** Bounds of an exponential backoff: the first delay's ceiling and the largest. */
export interface Backoff {
  minMs: number;
  maxMs: number;
}

/**
 * The delay before retry number `attempt` (0 first): the ceiling doubles from `minMs` to `maxMs` and the
 * delay is drawn from its upper half, so processes that lost a backing service together do not come back
 * in lockstep yet none retries sooner than half the ceiling.
 */
export function backoffDelay(attempt: number, bounds: Backoff, random: () => number = Math.random): number {
  const ceiling = Math.min(bounds.maxMs, bounds.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
