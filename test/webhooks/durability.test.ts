import t from 'tap';
import { startTestCluster } from '../helpers/cluster.js';
import { startReceiver } from '../helpers/receiver.js';
import { waitFor } from '../helpers/service.js';

// Issue 19, "Done when": webhooks survive a kill -9 of the process delivering them. Events are recorded
// with what they report; the engine process is killed while its attempts are in flight (the receiver
// holds them unanswered); the restarted engine sends them again under the same webhook-id, so the
// receiver, keeping each id once, sees every event exactly once and every signature verifies.

const cluster = await startTestCluster(t, { gateways: 1, engines: 1, apis: 1, env: { WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32', WEBHOOK_TIMEOUT_MS: '2000', WEBHOOK_RETRY_BASE_MS: '100' } });
const alice = await cluster.createInstaller('Alice');
const api = (method: string, path: string, body?: unknown) => cluster.api(method, `/api/v1${path}`, { token: alice.token, ...(body === undefined ? {} : { body }) });
const receiver = await startReceiver(t);

t.test('every event arrives once per id after the delivering process is killed with SIGKILL mid-delivery', async (t) => {
  const hook = (await api('POST', '/webhooks', { url: receiver.url })).body;
  t.ok(hook.secret, JSON.stringify(hook));
  receiver.secrets.push(hook.secret);
  receiver.hold = true;
  const N = 20;
  for (let i = 0; i < N; i++) t.equal((await api('POST', `/webhooks/${hook.id}/test`)).status, 202);
  // Attempts are in flight (held unanswered) when the engine is killed.
  await receiver.until(() => receiver.held >= 5);
  const engine = cluster.workers.find((w) => w.role === 'engine')!;
  const restarted = cluster.nextRestart('engine');
  process.kill(engine.pid, 'SIGKILL');
  await restarted;
  receiver.hold = false;
  const events = await receiver.until((e) => e.length === N, 120_000);
  t.equal(events.length, N, 'every event, once per id');
  t.equal(new Set(events.map((e) => e.id)).size, N);
  t.equal(receiver.rejected, 0, 'every signature verified');
  const [row] = await waitFor(() => cluster.sql("SELECT count(*) FILTER (WHERE state = 'succeeded')::int AS ok, count(*)::int AS n FROM webhook_deliveries"), (rows: any[]) => rows[0]?.ok === N);
  t.same(row, { ok: N, n: N }, 'the delivery log: one delivery per event, all succeeded');
});
