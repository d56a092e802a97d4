import { setImmediate as turn } from 'node:timers/promises';
import { sql } from 'drizzle-orm';
import t from 'tap';
import { openDatabase, type Database } from '../../src/db/client.js';
import { isUnreachable } from '../../src/db/errors.js';
import { startPgProxy } from '../helpers/pg-proxy.js';
import { createTestDatabase } from '../helpers/service.js';

// PostgreSQL becomes unreachable under a process: a real server behind a TCP proxy the test cuts.

t.test('PostgreSQL cut under open connections and calls', async (t) => {
  const proxy = await startPgProxy(t);
  const url = proxy.via(await createTestDatabase(t));
  const lost: Error[] = [];
  const reachability: boolean[] = [];
  const database: Database = await openDatabase({
    url,
    dataDir: '/nonexistent',
    poolSize: 4,
    policy: { connectTimeoutMs: 750, queryTimeoutMs: 5000 },
    onConnectionError: (err) => lost.push(err),
    onReachability: (s) => reachability.push(s.reachable),
  });
  t.teardown(() => database.close());
  await database.ping();

  await t.test('a connection checked out for a transaction is lost: the transaction fails, the process stays up', async (t) => {
    const outcome = await database.db
      .transaction(async (tx) => {
        await tx.execute(sql`select 1`);
        const noticed = new Promise<void>((resolve) => {
          const check = setInterval(() => lost.length && (clearInterval(check), resolve()), 5);
        });
        proxy.cut();
        // node-postgres emits `error` on the checked-out client; unhandled, it would end this process.
        await noticed;
        await tx.execute(sql`select 2`);
      })
      .then(
        () => 'committed',
        (err: unknown) => err,
      );
    t.ok(isUnreachable(outcome), `the transaction failed as unreachable (${(outcome as Error).message})`);
    t.ok(lost.length >= 1, 'the lost connection was reported');
    proxy.restore();
    await waitUntilReachable(database);
  });

  await t.test('while unreachable every call fails at once and the pool dials once per backoff delay', async (t) => {
    const before = reachability.filter((r) => !r).length;
    proxy.cut();
    let calls = 0;
    let slowest = 0;
    const surprises: string[] = [];
    // Calls as fast as they come back, until the pool has failed four connection attempts.
    while (reachability.filter((r) => !r).length - before < 4) {
      const started = Date.now();
      const err = await database.ping().then(
        () => null,
        (e: unknown) => e,
      );
      slowest = Math.max(slowest, Date.now() - started);
      if (!err || !isUnreachable(err)) surprises.push(err ? (err as Error).message : 'answered');
      calls++;
      await turn();
    }
    t.same(surprises, [], 'every call failed as unreachable');
    t.ok(proxy.attempts <= 5, `${proxy.attempts} connection attempts for ${calls} calls`);
    t.ok(calls > 10 * proxy.attempts, `calls (${calls}) fail without dialling`);
    t.ok(slowest < 750, `every call failed within the connect timeout (slowest ${slowest} ms)`);
    proxy.restore();
    await waitUntilReachable(database);
    t.equal(reachability.at(-1), true, 'reported reachable again');
  });
});

t.test('PostgreSQL silent (a partition): calls fail within the connect and query timeouts instead of hanging', async (t) => {
  const proxy = await startPgProxy(t);
  const url = proxy.via(await createTestDatabase(t));
  const database = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 2, policy: { connectTimeoutMs: 300, queryTimeoutMs: 1000 }, onConnectionError: () => {} });
  t.teardown(() => database.close());
  await database.ping();
  proxy.stall();
  const timed = async () => {
    const started = Date.now();
    const err = await database.ping().then(
      () => null,
      (e: unknown) => e as Error,
    );
    return { err, ms: Date.now() - started };
  };
  // The pooled connection is open but nothing comes back: the query timeout ends the wait.
  const silent = await timed();
  t.ok(silent.err && isUnreachable(silent.err), `failed as unreachable: ${silent.err?.message}`);
  t.ok(silent.ms >= 900 && silent.ms < 3000, `after the query timeout (${silent.ms} ms)`);
  // A new connection gets no answer: the connect timeout ends the wait.
  const fresh = await timed();
  t.ok(fresh.err && isUnreachable(fresh.err), `failed as unreachable: ${fresh.err?.message}`);
  t.ok(fresh.ms < 1000, `within the connect timeout (${fresh.ms} ms)`);
  proxy.restore();
  await waitUntilReachable(database);
  t.pass('reachable again');
});

/** Pings (as callers would) until a probe gets through; the pool decides when it dials. */
async function waitUntilReachable(database: Database): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (await database.ping().then(() => true, () => false)) return;
    if (Date.now() > deadline) throw new Error('the database never came back');
    await new Promise((r) => setTimeout(r, 20));
  }
}
