import t from 'tap';
import { startPgProxy } from '../helpers/pg-proxy.js';
import { createTestDatabase, once } from '../helpers/service.js';
import { startTestCluster } from '../helpers/cluster.js';

// An engine process dies while PostgreSQL is unreachable (the soak's fault: its restarts failed at start
// and came back only at the launcher's ever longer restart delays, long after the outage). Real launcher,
// real processes, a TCP proxy in front of the real PostgreSQL.

t.test('a process restarted during a PostgreSQL outage waits for the database and starts once it is back', async (t) => {
  const proxy = await startPgProxy(t);
  const direct = await createTestDatabase(t);
  const cluster = await startTestCluster(t, { gateways: 1, engines: 1, databaseUrl: proxy.via(direct), sqlUrl: direct, env: { RECONCILE_INTERVAL_MS: '2000' } });
  const exits: { role: string; pid: number }[] = [];
  cluster.events.on('worker-exited', (m: { role: string; pid: number }) => exits.push(m));
  const engine = cluster.workers.find((w) => w.role === 'engine')!;

  proxy.cut();
  const killed = once(cluster.events, 'worker-exited');
  process.kill(engine.pid, 'SIGKILL');
  await killed;
  // The new engine process cannot reach PostgreSQL: it says so twice (it waits, retrying) instead of exiting.
  const waits: { role: string; pid: number; retryInMs: number }[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the restarted engine never reported waiting for the database')), 60_000);
    const seen = (m: { role: string; pid: number; retryInMs: number }) => {
      if (m.role !== 'engine') return;
      waits.push(m);
      if (waits.length < 2) return;
      clearTimeout(timer);
      cluster.events.off('worker-waiting', seen);
      resolve();
    };
    cluster.events.on('worker-waiting', seen);
    // A restarted engine that exits again is the fault itself: fail at once rather than time out.
    cluster.events.on('worker-exited', (m: { role: string }) => m.role === 'engine' && exits.length > 1 && reject(new Error('the restarted engine exited during the outage')));
  });
  t.equal(new Set(waits.map((w) => w.pid)).size, 1, 'one process waited (no restart loop)');
  t.ok(waits.every((w) => w.retryInMs >= 250 && w.retryInMs <= 5000), `retry delays bounded: ${waits.map((w) => w.retryInMs).join(', ')} ms`);
  t.same(exits.map((e) => e.role), ['engine'], 'only the killed process exited; API and gateway stayed up through the outage');

  const back = cluster.nextRestart('engine', 30_000);
  const restoredAt = Date.now();
  proxy.restore();
  const restarted = await back;
  t.equal(restarted.pid, waits[0]!.pid, 'the waiting process is the one that started');
  t.ok(Date.now() - restoredAt < 30_000, `back ${Date.now() - restoredAt} ms after the database`);
  t.equal((await cluster.api('GET', '/readyz', { token: null })).status, 200, 'the cluster is ready again');
});
