import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { AuthFailureLimiter } from '../../src/device-gateway/auth-limiter.js';
import { freePort } from '../../src/infra/net.js';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import type { Logger } from '../../src/logger.js';
import { waitFor } from '../helpers/service.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const MINUTE = 60_000;
// An injected clock: 5 s into window 1000.
const WINDOW = 1000;
const T0 = WINDOW * MINUTE + 5000;
const WINDOW_END = (WINDOW + 1) * MINUTE;

/** The Redis every limiter duplicates its connections from (never connected itself). */
const template = (url = REDIS_URL) => new Redis(url, { lazyConnect: true });

function recordingLogger() {
  const lines: { level: string; msg: string }[] = [];
  const at = (level: string) => (obj: unknown, msg?: string) => void lines.push({ level, msg: typeof obj === 'string' ? obj : (msg ?? '') });
  return { lines, log: { warn: at('warn'), info: at('info'), error: at('error'), debug: at('debug') } as unknown as Logger };
}

/** A unique prefix per test; its keys are deleted when the test ends. */
async function sharedStore(t: Test) {
  const prefix = `test-auth-limiter:${randomBytes(6).toString('hex')}`;
  const inspect = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  t.teardown(async () => {
    await deleteKeysUnder(inspect, prefix);
    inspect.disconnect();
  });
  return { prefix, inspect };
}

async function sharedLimiter(t: Test, limit: number, prefix: string) {
  const made = new AuthFailureLimiter(limit, { shared: { redis: template(), prefix } });
  t.teardown(() => made.close());
  await made.start();
  return made;
}

t.test('failures recorded on two gateways add up: at the limit the name is refused from that address on both', async (t) => {
  const { prefix, inspect } = await sharedStore(t);
  const [a, b] = [await sharedLimiter(t, 4, prefix), await sharedLimiter(t, 4, prefix)];
  a.recordFailure('10.0.0.1', '0C11050B9814', T0);
  a.recordFailure('10.0.0.1', '0C11050B9814', T0 + 10);
  b.recordFailure('10.0.0.1', '0C11050B9814', T0 + 20);
  await Promise.all([a.settled(), b.settled()]);
  t.notOk(a.isBlocked('10.0.0.1', '0C11050B9814', T0 + 30), 'three of four: not yet');
  t.notOk(b.isBlocked('10.0.0.1', '0C11050B9814', T0 + 30));
  t.notOk(b.recordFailure('10.0.0.1', '0C11050B9814', T0 + 40), 'each gateway saw only two: neither crossed the limit alone');
  await b.settled();
  t.ok(b.isBlocked('10.0.0.1', '0C11050B9814', T0 + 50), 'the gateway whose failure reached the limit refuses at once');
  t.ok(await waitFor(() => a.isBlocked('10.0.0.1', '0C11050B9814', T0 + 50), (blocked) => blocked, 5000), 'the other gateway refuses after the notice');

  const key = `${prefix}:auth-fail:${WINDOW}:10.0.0.1:0C11050B9814`;
  t.equal(await inspect.get(key), '4', 'the count lives in Redis under the window of the injected clock');
  const ttl = await inspect.pttl(key);
  t.ok(ttl > 0 && ttl <= WINDOW_END - T0 + 1000, `the key expires when its window ends (${ttl} ms left)`);

  for (const l of [a, b]) {
    t.notOk(l.isBlocked('10.0.0.1', '0C11050B9815', T0 + 50), 'another name from that address is not refused');
    t.notOk(l.isBlocked('10.0.0.2', '0C11050B9814', T0 + 50), 'the same name from another address is not refused');
    t.ok(l.isBlocked('10.0.0.1', '0C11050B9814', WINDOW_END - 1), 'refused until the window ends');
    t.notOk(l.isBlocked('10.0.0.1', '0C11050B9814', WINDOW_END), 'and no longer once it has ended');
  }

  // The next window counts from zero, in a key of its own.
  a.recordFailure('10.0.0.1', '0C11050B9814', WINDOW_END + 1);
  await a.settled();
  t.equal(await inspect.get(`${prefix}:auth-fail:${WINDOW + 1}:10.0.0.1:0C11050B9814`), '1');
  t.notOk(a.isBlocked('10.0.0.1', '0C11050B9814', WINDOW_END + 2));
  t.notOk(b.isBlocked('10.0.0.1', '0C11050B9814', WINDOW_END + 2));
});

t.test('names that are no MAC of the library count together across gateways too', async (t) => {
  const { prefix } = await sharedStore(t);
  const [a, b, c] = [await sharedLimiter(t, 3, prefix), await sharedLimiter(t, 3, prefix), await sharedLimiter(t, 3, prefix)];
  a.recordFailure('10.0.0.9', '*', T0);
  b.recordFailure('10.0.0.9', '*', T0);
  c.recordFailure('10.0.0.9', '*', T0);
  await Promise.all([a.settled(), b.settled(), c.settled()]);
  for (const [i, l] of [a, b, c].entries()) t.ok(await waitFor(() => l.isBlocked('10.0.0.9', '*', T0 + 1), (blocked) => blocked, 5000), `one failure on each of three gateways blocks on gateway ${i + 1}`);
});

t.test('one gateway alone still limits at once, without waiting for Redis', async (t) => {
  const { prefix } = await sharedStore(t);
  const a = await sharedLimiter(t, 3, prefix);
  t.notOk(a.recordFailure('10.0.0.3', '0C11050B9814', T0));
  t.notOk(a.recordFailure('10.0.0.3', '0C11050B9814', T0));
  t.ok(a.recordFailure('10.0.0.3', '0C11050B9814', T0), 'the third failure crosses the limit (the caller logs it)');
  t.ok(a.isBlocked('10.0.0.3', '0C11050B9814', T0), 'refused synchronously');
});

t.test('Redis away: each gateway limits locally, nothing throws, the outage is logged once', async (t) => {
  const port = await freePort(); // nothing listens there
  const { lines, log } = recordingLogger();
  const limiter = new AuthFailureLimiter(3, { shared: { redis: template(`redis://127.0.0.1:${port}`), prefix: 'test-auth-limiter:down' }, log });
  t.teardown(() => limiter.close());
  await limiter.start();
  for (let i = 0; i < 2; i++) t.notOk(limiter.recordFailure('10.0.0.4', '0C11050B9814', T0 + i));
  t.notOk(limiter.isBlocked('10.0.0.4', '0C11050B9814', T0 + 2));
  t.ok(limiter.recordFailure('10.0.0.4', '0C11050B9814', T0 + 2));
  t.ok(limiter.isBlocked('10.0.0.4', '0C11050B9814', T0 + 3), 'blocked by the local count');
  t.notOk(limiter.isBlocked('10.0.0.4', '0C11050B9814', T0 + MINUTE), 'for one window');
  await limiter.settled();
  t.equal(lines.filter((l) => l.level === 'warn' && /Redis does not answer/.test(l.msg)).length, 1, 'logged once');
});

t.test('without Redis the limiter is the process-local one', async (t) => {
  const limiter = new AuthFailureLimiter(2);
  t.teardown(() => limiter.close());
  await limiter.start();
  limiter.recordFailure('10.0.0.5', 'X', T0);
  t.ok(limiter.recordFailure('10.0.0.5', 'X', T0 + 1));
  t.ok(limiter.isBlocked('10.0.0.5', 'X', T0 + 2));
  t.notOk(limiter.isBlocked('10.0.0.6', 'X', T0 + 2));
  t.notOk(limiter.isBlocked('10.0.0.5', 'X', T0 + MINUTE));
});

t.test('memory stays bounded: block notices and failures share the window bound', async (t) => {
  const { prefix, inspect } = await sharedStore(t);
  const limiter = new AuthFailureLimiter(1, { shared: { redis: template(), prefix }, maxWindows: 10 });
  t.teardown(() => limiter.close());
  await limiter.start();
  for (let i = 0; i < 30; i++) await inspect.publish(`${prefix}:auth-blocks`, JSON.stringify({ address: `10.1.0.${i}`, user: '*', until: WINDOW_END }));
  await waitFor(() => limiter.isBlocked('10.1.0.29', '*', T0), (blocked) => blocked, 5000);
  for (let i = 0; i < 30; i++) limiter.recordFailure(`10.2.0.${i}`, '*', T0);
  await limiter.settled();
  t.ok((limiter as unknown as { windows: Map<string, unknown> }).windows.size <= 10, 'at most maxWindows entries');
});

t.test('malformed block notices block nothing and take no memory; a valid notice after them still applies', async (t) => {
  const { prefix, inspect } = await sharedStore(t);
  const { lines, log } = recordingLogger();
  const limiter = new AuthFailureLimiter(3, { shared: { redis: template(), prefix }, log });
  t.teardown(() => limiter.close());
  await limiter.start();
  const malformed = [
    'not json',
    'null',
    '[]',
    JSON.stringify({ address: 1 }),
    JSON.stringify({ address: '10.3.0.1', user: '*' }),
    JSON.stringify({ address: '10.3.0.1', user: '*', until: String(WINDOW_END) }),
  ];
  for (const m of malformed) await inspect.publish(`${prefix}:auth-blocks`, m);
  // One connection publishes and one subscribes: the valid notice arrives after every malformed one.
  await inspect.publish(`${prefix}:auth-blocks`, JSON.stringify({ address: '10.3.0.2', user: '*', until: WINDOW_END }));
  t.ok(await waitFor(() => limiter.isBlocked('10.3.0.2', '*', T0), (blocked) => blocked, 5000), 'the valid notice after them applies: the subscriber stayed up');
  t.notOk(limiter.isBlocked('10.3.0.1', '*', T0), 'a notice without a numeric until blocks nothing');
  t.equal((limiter as unknown as { windows: Map<string, unknown> }).windows.size, 1, 'only the valid notice took an entry');
  t.same(lines.filter((l) => l.level !== 'debug'), [], 'and nothing was logged (the subscriber stayed up)');
  // The limiter's own counting is untouched: the third failure of a name from an address blocks it, not before.
  t.notOk(limiter.recordFailure('10.3.0.3', '0C11050B9814', T0), 'one failure of three: not refused');
  t.notOk(limiter.recordFailure('10.3.0.3', '0C11050B9814', T0 + 1));
  t.notOk(limiter.isBlocked('10.3.0.3', '0C11050B9814', T0 + 2));
  t.ok(limiter.recordFailure('10.3.0.3', '0C11050B9814', T0 + 2), 'the third blocks');
  t.ok(limiter.isBlocked('10.3.0.3', '0C11050B9814', T0 + 3));
  await limiter.settled();
});
