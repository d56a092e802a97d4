import t from 'tap';
import { createTestDatabase, once, startRedis, waitFor } from '../helpers/service.js';
import { databaseRelay, startTestCluster } from '../helpers/cluster.js';

// The cluster's backing services fail under it: an engine process is killed, Redis restarts empty,
// PostgreSQL becomes unreachable for a while. Real processes, a private redis-server, a TCP relay in
// front of PostgreSQL that the test cuts.

const finished = ['succeeded', 'failed', 'expired', 'canceled'];

t.test('an engine killed, Redis restarted empty, PostgreSQL unreachable: the cluster recovers and loses no job', async (t) => {
  const redis = await startRedis(t);
  const relay = await databaseRelay(t);
  const direct = await createTestDatabase(t);
  const viaRelay = new URL(direct);
  viaRelay.port = String(relay.port);
  const cluster = await startTestCluster(t, {
    gateways: 1,
    engines: 2,
    databaseUrl: viaRelay.toString(),
    sqlUrl: direct,
    redisUrl: redis.url,
    env: { JOB_ACK_TIMEOUT_MS: '1000', RECONCILE_INTERVAL_MS: '2000', QUEUE_TIMEOUT_MS: '1000' },
  });
  const installer = await cluster.createInstaller();
  const token = installer.token;
  const macs = Array.from({ length: 4 }, (_, i) => `0C1105CE${i.toString(16).toUpperCase().padStart(4, '0')}`);
  for (const mac of macs) await cluster.addDevice(token, mac);
  const offlineMac = '0C1105CE00FF';
  await cluster.addDevice(token, offlineMac);
  const devices = macs.map((mac) => cluster.device(mac, { behaviour: { answerDelayMs: 1000 } }));
  for (const d of devices) {
    d.start();
    await once(d, 'online');
  }
  await waitFor(() => devices.every((d) => d.applications.length >= 1), Boolean, 90_000);
  const jobState = (id: string) => cluster.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);
  const allEnd = (ids: string[]) => waitFor(() => Promise.all(ids.map(jobState)), (list) => list.every((j) => finished.includes(j.state)), 120_000, 100);

  await t.test('kill -9 of an engine process: its work goes on in the other', async (t) => {
    const ids: string[] = [];
    for (const mac of macs) ids.push((await cluster.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Engine.Marker = 1' } })).body.job.id);
    // The commands are out (devices answer a second later) when one engine dies.
    await waitFor(() => devices.every((d, i) => d.received.some((c) => c.id === ids[i])), Boolean);
    const restarted = cluster.nextRestart('engine');
    process.kill(cluster.workers.find((w) => w.role === 'engine')!.pid, 'SIGKILL');
    const ends = await allEnd(ids);
    t.same(ends.map((j) => j.state), ['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    devices.forEach((d, i) => t.equal(d.applications.filter((a) => a.id === ids[i]).length, 1, 'applied once'));
    await restarted;
    // And new work runs while one engine is gone or coming back.
    const more = (await cluster.api('POST', `/api/v1/devices/${macs[0]}/reboot`, { token })).body.job.id;
    t.equal((await allEnd([more]))[0].state, 'succeeded');
  });

  await t.test('Redis restarted empty: sessions, twins and wake-ups come back from PostgreSQL and the gateways', async (t) => {
    // A job for an offline device waits in PostgreSQL and in Redis.
    const waiting = (await cluster.api('POST', `/api/v1/devices/${offlineMac}/reboot`, { token })).body.job.id;
    await redis.stop();
    await redis.start();
    // Requests made while the queue comes back are recorded (202, or 503 with the job ids).
    const ids: string[] = [];
    for (const mac of macs) {
      const res = await waitFor(
        () => cluster.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Redis.Marker = 1' } }),
        (r) => r.status === 202 || (r.status === 503 && r.body.error.code === 'queue_unavailable'),
      );
      ids.push(res.status === 202 ? res.body.job.id : res.body.error.details.jobIds[0]);
    }
    const ends = await allEnd(ids);
    t.same(ends.map((j) => j.state), ['succeeded', 'succeeded', 'succeeded', 'succeeded'], 'connected devices got their commands after Redis came back empty');
    const late = cluster.device(offlineMac);
    late.start();
    t.equal((await allEnd([waiting]))[0].state, 'succeeded', 'the job recorded before the restart was not lost');
  });

  await t.test('PostgreSQL unreachable: 503 with the error body, nothing half-written, work resumes by itself', async (t) => {
    const jobsOf = async (mac: string) => (await cluster.sql(`SELECT count(*)::int AS n FROM jobs WHERE mac = $1`, [mac]))[0].n as number;
    const before = await jobsOf(macs[1]!);
    await relay.cut();
    const refused = await cluster.api('POST', `/api/v1/devices/${macs[1]}/autop/once`, { token, body: { commands: 'Config.Db.Marker = 1' } });
    t.equal(refused.status, 503);
    t.equal(refused.body.error.code, 'database_unavailable');
    t.type(refused.body.error.message, 'string');
    await relay.restore();
    t.equal(await jobsOf(macs[1]!), before, 'the refused request left no job');
    const res = await waitFor(
      () => cluster.api('POST', `/api/v1/devices/${macs[1]}/autop/once`, { token, body: { commands: 'Config.Db.Marker = 2' } }),
      (r) => r.status === 202,
    );
    t.equal((await allEnd([res.body.job.id]))[0].state, 'succeeded', 'work resumed without a restart');
    t.equal(devices[1]!.config.get('Config.Db.Marker'), '2');
    const online = await waitFor(() => cluster.api('GET', '/api/v1/devices?status=online&pageSize=1', { token }).then((r) => r.body.total), (n) => n === 5);
    t.equal(online, 5, 'presence written again once the database answered');
  });
});
