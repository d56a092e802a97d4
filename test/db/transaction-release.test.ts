import { sql } from 'drizzle-orm';
import t from 'tap';
import { openDatabase } from '../../src/db/client.js';
import { isUnreachable } from '../../src/db/errors.js';
import { startPgProxy } from '../helpers/pg-proxy.js';
import { createTestDatabase } from '../helpers/service.js';

// A transaction whose BEGIN fails (here: unanswered, a partition) must give its connection back; else
// the pool runs dry and `close()` waits for it forever (the shutdown hang of service-outage.test.ts).

t.test('a transaction whose BEGIN goes unanswered gives its connection back', async (t) => {
  const proxy = await startPgProxy(t);
  const url = proxy.via(await createTestDatabase(t));
  const overdue: number[] = [];
  const database = await openDatabase({
    url,
    dataDir: '/nonexistent',
    poolSize: 1,
    policy: { connectTimeoutMs: 500, queryTimeoutMs: 200 },
    onConnectionError: () => {},
    closeGraceMs: 2000,
    onCloseOverdue: (s) => overdue.push(s.checkedOut),
  });
  await database.ping(); // the pool's one connection, idle
  proxy.stall();
  let ran = false;
  const failed = await database.db.transaction(async () => void (ran = true)).then(
    () => null,
    (err: unknown) => err,
  );
  t.ok(isUnreachable(failed), `the transaction failed as unreachable (${(failed as Error)?.message})`);
  t.notOk(ran, 'its work never ran');
  proxy.restore();
  // With the connection leaked, this waits for a free one of a full pool and times out.
  await database.ping();
  t.pass('the only connection of the pool serves the next call');
  await database.close();
  t.same(overdue, [], 'close ended the pool without destroying a checked-out connection');
});

t.test('close() destroys connections never given back once its grace has passed', async (t) => {
  const url = await createTestDatabase(t);
  const overdue: number[] = [];
  const database = await openDatabase({ url, dataDir: '/nonexistent', poolSize: 2, closeGraceMs: 100, onCloseOverdue: (s) => overdue.push(s.checkedOut) });
  await database.ping();
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  const transaction = database.db.transaction(async (tx) => {
    await tx.execute(sql`select 1`);
    holding();
    await new Promise(() => {}); // a caller that never finishes
  });
  void transaction.catch(() => {});
  await held;
  await database.close();
  t.same(overdue, [1], 'the one connection still checked out was reported and destroyed');
});
