import pg from 'pg';
import t from 'tap';
import { startPgProxy } from './helpers/pg-proxy.js';
import { createTestDatabase, once, startTestService, waitFor } from './helpers/service.js';

// PostgreSQL becomes unreachable under a running service with devices connected and jobs in flight: a real
// server behind a TCP proxy the test cuts (every connection reset, new ones refused), then restores.

// Tens of devices in CI; OUTAGE_DEVICES=300 (say) measures a larger fleet by hand.
const DEVICES = Number(process.env.OUTAGE_DEVICES ?? 20);

t.test('PostgreSQL away under devices and jobs: the process stays up, answers 503 at once, and loses no answer', async (t) => {
  const proxy = await startPgProxy(t);
  const direct = await createTestDatabase(t);
  // Redelivery and the in-progress timeout come long after the test's bounds: a job that ends well before
  // them ended because its answer was kept, not because its command went out again.
  const svc = await startTestService(t, { DATABASE_URL: proxy.via(direct), JOB_ACK_TIMEOUT_MS: '120000', JOB_IN_PROGRESS_TIMEOUT_MS: '600000' });
  const sql = new pg.Pool({ connectionString: direct, max: 2 });
  sql.on('error', () => {});
  t.teardown(() => sql.end());
  const installer = await svc.createInstaller();
  const token = installer.token;
  const macs = Array.from({ length: DEVICES }, (_, i) => `0C1105DB${i.toString(16).toUpperCase().padStart(4, '0')}`);
  for (const mac of macs) await svc.addDevice(token, mac);
  const site = await svc.api('POST', '/api/v1/sites', { token, body: { kind: 'community', name: 'Outage court', timeZone: 'Europe/Berlin' } });
  t.equal(site.status, 201);
  // Answers come a while after each command (longer than dispatching them all takes): the database is
  // cut in between.
  const devices = macs.map((mac) => svc.device(mac, { behaviour: { answerDelayMs: 1500 + 10 * DEVICES } }));
  for (const d of devices) {
    d.start();
    await once(d, 'online');
  }
  await waitFor(() => devices.every((d) => d.applications.length >= 1), Boolean, 60_000, 50);
  t.ok(site.body.id, 'a site whose directory changes the follower renders');
  await svc.service.follower.settled();

  const batch = await svc.api('POST', '/api/v1/autop/batch', { token, body: { macs, commands: 'Config.Outage.Marker = 1', mode: 'once' } });
  t.equal(batch.status, 202);
  const jobOf = new Map<string, string>((batch.body.jobs as { id: string; mac: string }[]).map((j) => [j.mac, j.id]));
  const ids = macs.map((mac) => jobOf.get(mac)!);
  t.equal(ids.filter(Boolean).length, DEVICES, 'one job per device');
  await waitFor(() => devices.every((d, i) => d.received.some((c) => c.id === ids[i])), Boolean, 30_000, 10);
  proxy.cut();

  await t.test('requests answer 503 database_unavailable within a second; /readyz says not ready', async (t) => {
    const timed = async (method: string, path: string, body?: unknown) => {
      const started = Date.now();
      const res = await svc.api(method, path, { token, body });
      return { ...res, ms: Date.now() - started };
    };
    const answers = [
      await timed('POST', `/api/v1/devices/${macs[0]}/reboot`),
      await timed('GET', '/api/v1/devices?pageSize=5'),
      await timed('GET', `/api/v1/jobs/${ids[0]}`),
      await timed('POST', `/api/v1/devices/${macs[1]}/autop/once`, { commands: 'Config.Outage.Marker = 2' }),
    ];
    for (const a of answers) {
      t.equal(a.status, 503, `503 (${a.ms} ms)`);
      t.equal(a.body?.error?.code, 'database_unavailable');
      t.ok(a.ms < 1000, `answered within a second (${a.ms} ms)`);
    }
    const ready = await timed('GET', '/readyz');
    t.equal(ready.status, 503);
    t.equal(ready.body.status, 'not-ready');
    t.equal(ready.body.checks.database, 'failing');
    t.ok(ready.ms < 1000, `/readyz within a second (${ready.ms} ms)`);
    t.equal((await svc.api('GET', '/healthz')).status, 200, 'alive');
  });

  await t.test('the directory follower fails its pass and waits to retry (no unheard error ends the process)', async (t) => {
    // A directory change lands while the service cannot read it (written straight to PostgreSQL).
    await sql.query('INSERT INTO directory_changes (site_id) VALUES ($1)', [site.body.id]);
    const retrying = once<{ delayMs: number }>(svc.service.follower, 'retrying');
    svc.service.follower.poke();
    const { delayMs } = await retrying;
    t.ok(delayMs > 0 && delayMs <= 5000, `retries in ${delayMs} ms`);
  });

  await t.test('answers that arrive while the database is away are applied once it is back, without redelivery', async (t) => {
    // Both answers of every device (accepted, succeeded) wait in the gateway process.
    const waiting = async () => {
      const text = (await svc.api('GET', '/metrics', { token: null })).body as string;
      return Number(/^intercom_device_answers_waiting\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    t.equal(await waitFor(waiting, (n) => n >= 2 * DEVICES, 30_000, 50), 2 * DEVICES, 'every answer held');
    const rendered = new Promise<void>((resolve) => {
      const seen = ({ siteId }: { siteId: string }) => siteId === site.body.id && (svc.service.follower.off('rendered', seen), resolve());
      svc.service.follower.on('rendered', seen);
    });
    proxy.restore();
    const started = Date.now();
    const jobs = await waitFor(
      () => Promise.all(ids.map((id) => sql.query('SELECT state FROM jobs WHERE id = $1', [id]).then((r) => r.rows[0].state as string))),
      (states) => states.every((s) => s === 'succeeded'),
      60_000,
      50,
    );
    t.same(new Set(jobs), new Set(['succeeded']), `all ${DEVICES} jobs succeeded ${Date.now() - started} ms after the database came back`);
    devices.forEach((d, i) => t.equal(d.received.filter((c) => c.id === ids[i]).length, 1, `${macs[i]} got its command once`));
    // The last answers may still be finishing (the engine records the configuration hash after the job).
    t.equal(await waitFor(waiting, (n) => n === 0, 30_000, 50), 0, 'nothing left waiting');
    await rendered;
    t.pass('the directory change written during the outage was rendered by the follower retrying on its own');
  });
});
