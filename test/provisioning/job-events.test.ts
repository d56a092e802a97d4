import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import t from 'tap';
import { openDatabase, runMigrations } from '../../src/db/client.js';
import { spawnTied } from '../../src/infra/tied-child.js';
import { JobStore } from '../../src/provisioning/job-store.js';
import { createTestDatabase, waitFor } from '../helpers/service.js';

// The process that follows the outbox is killed with SIGKILL while a sink holds an event it has not yet
// committed; after a restart every event reaches every sink exactly once, and the outbox empties.

const url = await createTestDatabase(t);
const database = await openDatabase({ url, dataDir: '/tmp' });
t.teardown(() => database.close());
await runMigrations(database);
const pool = new pg.Pool({ connectionString: url, max: 2 });
pool.on('error', () => {}); // connections this test cuts on purpose
t.teardown(() => pool.end());
const q = async <T = any>(text: string, params: unknown[] = []) => (await pool.query(text, params)).rows as T[];
await q('CREATE TABLE sink_ledger (sink text NOT NULL, event_id bigint NOT NULL, job_id uuid NOT NULL)');
const store = new JobStore(database);
const child = fileURLToPath(new URL('../helpers/job-event-follower-child.ts', import.meta.url));

/** Starts the follower process; answers it and its stdout lines as they come. */
function follower(hang?: string) {
  const proc = spawnTied(process.execPath, ['--import=tsx', child], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, DATABASE_URL: url, HANG: hang ?? '' } });
  t.teardown(() => void proc.kill('SIGKILL'));
  const lines = createInterface({ input: proc.stdout! });
  const line = (key: string) =>
    new Promise<Record<string, unknown>>((resolve) => {
      const seen = (l: string) => {
        const m = JSON.parse(l) as Record<string, unknown>;
        if (key in m) (lines.off('line', seen), resolve(m));
      };
      lines.on('line', seen);
    });
  return { proc, line };
}

async function kill9(proc: ReturnType<typeof follower>['proc']) {
  const exited = once(proc, 'exit');
  proc.kill('SIGKILL');
  const [code, signal] = await exited;
  return signal ?? code;
}

/** A job made and canceled: two events. */
async function twoTransitions(mac: string) {
  const [job] = await store.create(database.db, { accountId: null, label: 'test' }, [{ kind: 'reboot', mac, installerId: '00000000-0000-4000-8000-000000000001', expiresAt: new Date(Date.now() + 3600_000) }]);
  await store.transition(null, { id: job!.id }, { type: 'finish', state: 'canceled', error: { code: 'canceled', message: 'test' } }, 'test');
  const events = await q<{ id: string }>('SELECT id FROM job_events WHERE job_id = $1 ORDER BY id', [job!.id]);
  return { jobId: job!.id, events: events.map((e) => Number(e.id)) };
}

const ledgerOf = (jobId: string) => q<{ sink: string; event_id: string; n: number }>('SELECT sink, event_id, count(*)::int AS n FROM sink_ledger WHERE job_id = $1 GROUP BY 1, 2 ORDER BY 1, 2', [jobId]);

for (const hangSink of ['ledger-a', 'ledger-b']) {
  t.test(`killed while ${hangSink} holds the event: after a restart each sink has it exactly once`, async (t) => {
    const { jobId, events } = await twoTransitions(hangSink === 'ledger-a' ? '0C1105E00001' : '0C1105E00002');
    t.equal(events.length, 2, 'created and canceled are in the outbox');
    const first = follower(`${hangSink}:${jobId}`);
    await first.line('hanging');
    t.equal((await ledgerOf(jobId)).filter((r) => r.sink === hangSink).length, 0, `${hangSink} has committed nothing of the job`);
    t.equal(await kill9(first.proc), 'SIGKILL');
    t.equal((await q('SELECT id FROM job_events WHERE job_id = $1', [jobId])).length, 2, 'the outbox still holds both events');

    const second = follower();
    await second.line('ready');
    const ledger = await waitFor(() => ledgerOf(jobId), (rows) => rows.length === 4);
    t.same(
      ledger.map((r) => [r.sink, Number(r.event_id), r.n]),
      ['ledger-a', 'ledger-b'].flatMap((s) => events.map((id) => [s, id, 1])),
      'every event in every sink, once',
    );
    await waitFor(() => q('SELECT id FROM job_events WHERE job_id = $1', [jobId]), (rows) => rows.length === 0);
    t.pass('the outbox is emptied once every sink took the events');
    second.proc.stdin!.end();
    await once(second.proc, 'exit');
  });
}

t.test('a failing sink is handed its events again (others go on); connections cut under the follower are survived', async (t) => {
  const { JobEventFollower } = await import('../../src/provisioning/job-events.js');
  const { createLogger } = await import('../../src/logger.js');
  const follower = new JobEventFollower({ database, log: createLogger('silent'), listenUrl: url, pollMs: 200 });
  t.teardown(() => follower.stop());
  const took = { steady: [] as number[], flaky: [] as number[] };
  let failures = 0;
  let tookAll: () => void;
  const allTaken = new Promise<void>((resolve) => (tookAll = resolve));
  let jobIds: string[] = [];
  const check = () => {
    if (jobIds.length && took.flaky.length === 4 && took.steady.length === 4) tookAll();
  };
  follower.register({ name: 'steady', handle: async (events) => void (took.steady.push(...events.map((e) => e.id)), check()) });
  follower.register({
    name: 'flaky',
    async handle(events) {
      if (failures < 2) {
        failures++;
        throw new Error('sink down (test)');
      }
      took.flaky.push(...events.map((e) => e.id));
      check();
    },
  });
  // The outbox is empty of earlier tests' events (every ledger sink took them): these sinks start at the oldest left.
  const first = await twoTransitions('0C1105E00003');
  follower.start();
  // Every connection to this database is cut: the pool's and the follower's LISTEN connection.
  await q('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  const second = await twoTransitions('0C1105E00004');
  jobIds = [first.jobId, second.jobId];
  check();
  await allTaken;
  t.equal(failures, 2, 'the flaky sink failed twice');
  t.same([...took.flaky].sort(), [...first.events, ...second.events].sort(), 'then took every event, each once');
  t.same([...took.steady].sort(), [...first.events, ...second.events].sort(), 'and the steady sink took each once');
});
