import { isUnreachable } from '../db/errors.js';

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

/** Failures that pass when PostgreSQL or Redis comes back (worth retrying); anything else is for good. */
export function isTransient(err: unknown): boolean {
  if (isUnreachable(err)) return true;
  const message = err instanceof Error ? err.message : String(err);
  return /Redis|Connection is closed|Stream isn't writeable|max retries per request/i.test(message);
}
