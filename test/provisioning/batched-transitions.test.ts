import t from 'tap';
import { openDatabase, runMigrations, type Database } from '../../src/db/client.js';
import { JobStore } from '../../src/provisioning/job-store.js';
import { createTestDatabase } from '../helpers/service.js';

// The engine's one-job transitions made together (a storm of answers) go to PostgreSQL as one statement:
// each job still gets its own change, audit row, outbox row and next head, and a request that cannot
// apply (finished, changed meanwhile, not a job id) changes nothing without failing the others.

const url = await createTestDatabase(t);
const database = await openDatabase({ url, dataDir: '/tmp' });
t.teardown(() => database.close());
await runMigrations(database);

// Counts the store's statements: the batch is the point.
let statements = 0;
const counted: Database = Object.create(database, {
  run: { value: (s: Parameters<Database['run']>[0], v: unknown[]) => (statements++, database.run(s, v)) },
});
let clock = Date.UTC(2030, 5, 1);
const store = new JobStore(counted, () => clock);
const installerId = '00000000-0000-4000-8000-0000000000b1';
const actor = { accountId: null, label: 'test' };
const make = (mac: string, n: number) =>
  store.create(
    database.db,
    actor,
    Array.from({ length: n }, () => ({ kind: 'reboot', mac, installerId, expiresAt: new Date(clock + 3600_000) })),
  );
const audit = (jobId: string) => database.run<{ action: string; actor: string; at: Date }>({ name: 't_audit', text: 'SELECT action, actor, at FROM audit_log WHERE job_id = $1 ORDER BY at' }, [jobId]);
const events = (jobId: string) => database.run<{ type: string; to_state: string; actor: string }>({ name: 't_events', text: 'SELECT type, to_state, actor FROM job_events WHERE job_id = $1 ORDER BY id' }, [jobId]);

t.test('transitions made together: one statement, each job its own change, audit, event and next head', async (t) => {
  const [a, b] = await make('0C1105B10001', 2);
  const [c] = await make('0C1105B10002', 1);
  const [d] = await make('0C1105B10003', 1);
  clock += 1000;
  statements = 0;
  const deadline = new Date(clock + 30_000);
  const [finishedA, dispatchedC, staleD, notAJob] = await Promise.all([
    store.transition(null, { id: a!.id, mac: a!.mac }, { type: 'finish', state: 'succeeded', error: null, result: { ok: true } }, 'device'),
    store.transition(null, { id: c!.id, state: 'queued', attempts: 0 }, { type: 'dispatch', state: 'dispatched', attempts: 1, deadline }, 'engine'),
    // Conditional on a state the job is not in: it changes nothing.
    store.transition(null, { id: d!.id, state: 'dispatched', attempts: 0 }, { type: 'finish', state: 'failed', error: { code: 'x', message: 'x' } }, 'engine'),
    store.transition(null, { id: 'not-a-job', mac: a!.mac }, { type: 'finish', state: 'failed', error: null }, 'device'),
  ]);
  t.equal(statements, 2, 'one statement per type of change (finish, dispatch), not one per job');
  t.match(finishedA, [{ id: a!.id, state: 'succeeded', fromState: 'queued', nextHeadId: b!.id, result: { ok: true } }], "the device's next job heads its queue");
  t.match(dispatchedC, [{ id: c!.id, state: 'dispatched', attempts: 1, deliveredAt: new Date(clock) }]);
  t.same(staleD, [], 'a job not in the state read is left alone');
  t.same(notAJob, [], 'an id that is no job changes nothing and fails nothing');
  t.match(await audit(a!.id), [{ action: 'job.created' }, { action: 'job.succeeded', actor: 'device', at: new Date(clock) }]);
  t.match(await audit(c!.id), [{ action: 'job.created' }, { action: 'job.dispatched', actor: 'engine' }]);
  t.match(await audit(d!.id), [{ action: 'job.created' }]);
  t.same(await events(a!.id), [
    { type: 'created', to_state: 'queued', actor: 'test' },
    { type: 'finished', to_state: 'succeeded', actor: 'device' },
  ]);
  t.same(await events(c!.id), [
    { type: 'created', to_state: 'queued', actor: 'test' },
    { type: 'dispatched', to_state: 'dispatched', actor: 'engine' },
  ]);
});

t.test('two transitions of one job never share a statement: the second sees the first', async (t) => {
  const [j] = await make('0C1105B10004', 1);
  clock += 1000;
  const deadline = new Date(clock + 30_000);
  const [first, second] = await Promise.all([
    store.transition(null, { id: j!.id, state: 'queued', attempts: 0 }, { type: 'dispatch', state: 'dispatched', attempts: 1, deadline }, 'engine'),
    store.transition(null, { id: j!.id, state: 'queued', attempts: 0 }, { type: 'dispatch', state: 'dispatched', attempts: 1, deadline }, 'engine'),
  ]);
  t.equal(first.length, 1, 'the first delivery is recorded');
  t.same(second, [], 'the same delivery decided twice is recorded once');
  t.match(await audit(j!.id), [{ action: 'job.created' }, { action: 'job.dispatched' }]);
});

t.test('jobs finished together on one device: the next head is the first job left', async (t) => {
  const [x, y, z] = await make('0C1105B10005', 3);
  const [fx, fy] = await Promise.all([
    store.transition(null, { id: x!.id }, { type: 'finish', state: 'canceled', error: null }, 'test'),
    store.transition(null, { id: y!.id }, { type: 'finish', state: 'canceled', error: null }, 'test'),
  ]);
  t.equal(fx[0]!.nextHeadId, z!.id, 'not the job finished beside it');
  t.equal(fy[0]!.nextHeadId, z!.id);
});

t.test("an urgent job's transition and read never wait behind the other jobs' batches in flight", async (t) => {
  // The background's statements are held (PostgreSQL busy with them) until the urgent job is through.
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const held = new Set<string>();
  const gated: Database = Object.create(database, {
    run: { value: (s: Parameters<Database['run']>[0], v: unknown[]) => ([...held].some((id) => JSON.stringify(v).includes(id)) ? gate.then(() => database.run(s, v)) : database.run(s, v)) },
  });
  const laned = new JobStore(gated, () => clock);
  const background = await make('0C1105B10006', 5);
  const [door] = await store.create(database.db, actor, [{ kind: 'open-door', mac: '0C1105B10007', installerId, expiresAt: new Date(clock + 10_000), urgent: true }]);
  for (const j of background) held.add(j.id);
  const finish = { type: 'finish', state: 'canceled', error: null } as const;
  // Four batches in flight (the most of one kind at once), each made in its own turn; a fifth waits for a slot.
  const waiting: Promise<unknown>[] = [];
  for (const j of background) {
    waiting.push(laned.loadWithHead(j.id), laned.transition(null, { id: j.id }, finish, 'test'));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const loaded = await laned.loadWithHead(door!.id, 'urgent');
  t.equal(loaded?.row.id, door!.id, 'the urgent job is read');
  const [opened] = await laned.transition(null, { id: door!.id }, { type: 'finish', state: 'succeeded', error: null }, 'device', {}, 'urgent');
  t.equal(opened?.state, 'succeeded', 'and finished while the others are still held');
  open();
  const done = await Promise.all(waiting);
  t.equal(done.filter((d) => Array.isArray(d)).flat().length, 5, 'the others are written once PostgreSQL takes them');
});
