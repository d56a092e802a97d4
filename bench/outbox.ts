import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openDatabase, runMigrations } from '../src/db/client.js';
import { createLogger } from '../src/logger.js';
import { JobEventFollower } from '../src/provisioning/job-events.js';
import { JobStore } from '../src/provisioning/job-store.js';

// npm run bench:outbox -- [--rate 1000] [--seconds 20]
// The lifecycle outbox alone, in one process as `npm start` runs it: jobs are made and canceled through the
// job store's one transition path at `rate` transitions a second (two per job); a sink notes when each event
// reached it. Reports the achieved rate, the latency from each transition's commit (its statement answered)
// to the sink (p50, p99; the instant stamped on the event also counts the wait for a pooled connection),
// and how long the outbox took to empty once the load stopped.
const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

const adminUrl = args['pg-admin-url'];
const dbName = `icbench_outbox_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const database = await openDatabase({ url: url.toString(), dataDir: '/tmp', poolSize: 10 });
const follower = new JobEventFollower({ database, log: createLogger('warn'), listenUrl: url.toString() });
try {
  await runMigrations(database);
  const store = new JobStore(database);
  const committed = new Map<string, number>();
  const arrived = new Map<string, number>();
  const stampedLatencies: number[] = [];
  let received = 0;
  follower.register({
    name: 'bench',
    async handle(events) {
      const now = Date.now();
      for (const e of events) {
        arrived.set(`${e.jobId}/${e.type}`, now);
        stampedLatencies.push(now - e.at.getTime());
      }
      received += events.length;
    },
  });
  follower.start();

  // Each tick makes its share of jobs in one statement, then cancels each (one statement per job).
  const TICK_MS = 10;
  const jobsPerTick = RATE / 2 / (1000 / TICK_MS);
  const installerId = randomUUID();
  let made = 0;
  let owed = 0;
  const started = Date.now();
  const inFlight = new Set<Promise<void>>();
  log(`${RATE} transitions/s for ${SECONDS} s`);
  while (Date.now() - started < SECONDS * 1000) {
    owed += jobsPerTick;
    const n = Math.floor(owed);
    owed -= n;
    if (n > 0 && inFlight.size < 64) {
      const items = Array.from({ length: n }, (_, i) => ({ kind: 'reboot', mac: `0C11B${String((made + i) % 1e7).padStart(7, '0')}`, installerId, expiresAt: new Date(Date.now() + 3600_000) }));
      made += n;
      const work = (async () => {
        const rows = await store.create(store.db, { accountId: null, label: 'bench' }, items);
        const at = Date.now();
        for (const r of rows) committed.set(`${r.id}/created`, at);
        await Promise.all(
          rows.map(async (r) => {
            await store.transition(null, { id: r.id }, { type: 'finish', state: 'canceled', error: { code: 'canceled', message: 'bench' } }, 'bench');
            committed.set(`${r.id}/finished`, Date.now());
          }),
        );
      })();
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
    }
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  await Promise.all(inFlight);
  const loadEnded = Date.now();
  const achieved = (made * 2) / ((loadEnded - started) / 1000);
  const count = async () => Number((await database.run<{ n: string }>({ name: 'bench_outbox_count', text: 'SELECT count(*) AS n FROM job_events' }, []))[0]!.n);
  while (received < made * 2 || (await count()) > 0) await new Promise((r) => setTimeout(r, 5));
  const emptied = Date.now() - loadEnded;
  // An event may reach the sink before its statement's answer reaches the producer: that counts as 0.
  const latencies = [...committed].map(([key, at]) => Math.max(0, arrived.get(key)! - at)).sort((a, b) => a - b);
  stampedLatencies.sort((a, b) => a - b);
  log(
    `achieved ${achieved.toFixed(0)} transitions/s; commit → sink p50 ${pct(latencies, 50)} ms, p99 ${pct(latencies, 99)} ms, max ${latencies.at(-1)} ms;` +
      ` stamped instant → sink p50 ${pct(stampedLatencies, 50)} ms, p99 ${pct(stampedLatencies, 99)} ms; outbox empty ${emptied} ms after the load stopped`,
  );
} finally {
  await follower.stop();
  await database.close();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
}
