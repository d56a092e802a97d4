import t from 'tap';
import { backoffDelay } from '../../src/infra/backoff.js';
import { redisRetryDelay } from '../../src/infra/redis.js';

// Retry delays of every loop that waits for PostgreSQL or Redis: doubling, bounded, never in lockstep.

t.test('the ceiling doubles from the first delay to the bound; each delay is drawn from its upper half', async (t) => {
  const bounds = { minMs: 200, maxMs: 5000 };
  t.same([0, 1, 2, 3, 4, 5, 10, 1000].map((a) => backoffDelay(a, bounds, () => 1)), [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  t.same([0, 1, 2, 3, 4, 5, 10, 1000].map((a) => backoffDelay(a, bounds, () => 0)), [100, 200, 400, 800, 1600, 2500, 2500, 2500]);
});

t.test('processes that failed together retry spread out, not in step', async (t) => {
  const delays = Array.from({ length: 200 }, () => backoffDelay(3, { minMs: 200, maxMs: 5000 }));
  t.ok(delays.every((d) => d >= 800 && d <= 1600), 'within the bounds of the attempt');
  t.ok(new Set(delays).size > 50, `spread (${new Set(delays).size} distinct delays of 200)`);
});

t.test('Redis reconnects back off from 100 ms to 2 s with jitter', async (t) => {
  t.same([1, 2, 3, 4, 5, 6, 50].map((n) => redisRetryDelay(n, () => 1)), [100, 200, 400, 800, 1600, 2000, 2000]);
  t.ok(redisRetryDelay(1, () => 0) >= 50, 'never at once');
});
