import { Redis } from 'ioredis';
import t from 'tap';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { once, startRedis, startTestService, waitFor, type TestService } from '../helpers/service.js';

// Redis is the scheduler, PostgreSQL the truth: Redis here keeps nothing on disk, may restart empty or be
// away, and may be shared by several deployments. None of that may lose, repeat or strand a job.

const finished = ['succeeded', 'failed', 'expired', 'canceled'];
const jobOf = (svc: TestService, token: string, id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);
const settled = (svc: TestService, token: string, id: string) => waitFor(() => jobOf(svc, token, id), (j) => finished.includes(j?.state));

t.test('Redis restarted empty while the service runs: a scheduled upgrade still fires and redelivery goes on', async (t) => {
  const redis = await startRedis(t);
  // No periodic reconciliation during the test: Redis coming back must be enough.
  const svc = await startTestService(t, { REDIS_URL: redis.url, JOB_ACK_TIMEOUT_MS: '300', JOB_MAX_ATTEMPTS: '10', RECONCILE_INTERVAL_MS: '3600000' });
  const { token } = await svc.createInstaller();
  const fw = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.200' })).body;
  const upgradeMac = '0C1105F00001';
  await knownDevice(svc, token, upgradeMac, { offline: true });
  // Scheduled far ahead, so the restart surely comes first; moved to now once the schedule is back.
  const at = new Date(Date.now() + 3600_000);
  const upgrade = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [upgradeMac], at: at.toISOString() } });
  t.equal(upgrade.status, 201);
  const scheduleKey = `${svc.service.queuePrefix}:upgrades:upgrade-${upgrade.body.id}-${at.getTime()}`;
  t.equal(await svc.service.redis.client.exists(scheduleKey), 1, 'its start waits in Redis');

  // A connected device that leaves its first three deliveries of every command unanswered.
  const quietMac = '0C1105F00002';
  const quiet = await knownDevice(svc, token, quietMac, { behaviour: { dropAcks: 3 }, reconnect: { minMs: 50, maxMs: 200 } });
  await waitFor(() => quiet.applications.length, (n) => n >= 1); // boot provisioning, after its redeliveries
  const job = (await svc.api('POST', `/api/v1/devices/${quietMac}/autop/once`, { token, body: { commands: 'Config.Redis.Restart = 1' } })).body.job;
  await waitFor(() => quiet.received.filter((c) => c.id === job.id).length, (n) => n >= 1);

  await redis.stop();
  const back = new Promise<string[]>((resolve) => { const stop = svc.service.engine.observe({ reconciled: (ids) => (stop(), resolve(ids)) }); });
  await redis.start(); // empty
  const reconciled = await back;
  t.ok(reconciled.includes(job.id), 'the job waiting for an answer got its twin back when Redis returned');

  const done = await settled(svc, token, job.id);
  t.equal(done.state, 'succeeded', 'redelivery went on until the device answered');
  t.ok(done.attempts >= 4, `delivered ${done.attempts} times`);
  t.equal(quiet.applications.filter((a) => a.id === job.id).length, 1, 'applied once');

  await waitFor(() => svc.service.redis.client.exists(scheduleKey), (n) => n === 1);
  t.pass('the start Redis lost was scheduled again from PostgreSQL');
  const soon = await svc.api('PATCH', `/api/v1/upgrades/${upgrade.body.id}`, { token, body: { at: new Date(Date.now() + 1000).toISOString() } });
  t.equal(soon.status, 200, 'brought forward, to see it fire');
  const device = svc.device(upgradeMac, { reconnect: { minMs: 50, maxMs: 200 } });
  device.start();
  const executed = await waitFor(() => svc.api('GET', `/api/v1/upgrades/${upgrade.body.id}`, { token }).then((r) => r.body), (u) => u.status === 'executed');
  t.equal(executed.succeeded, 1, 'the upgrade scheduled before the restart fired');
  t.equal(device.firmware, '29.30.10.200');
});

t.test('Redis down: a job request answers 503 queue_unavailable with its job ids; a retry with its Idempotency-Key makes nothing new', async (t) => {
  const redis = await startRedis(t);
  const svc = await startTestService(t, { REDIS_URL: redis.url, QUEUE_TIMEOUT_MS: '1000', RECONCILE_INTERVAL_MS: '3600000' });
  const { token } = await svc.createInstaller();
  const mac = '0C1105F00003';
  await svc.addDevice(token, mac);
  const headers = { 'idempotency-key': 'reboot-gate-1' };
  const count = async () => (await svc.sql('SELECT count(*)::int AS n FROM jobs WHERE mac = $1', [mac]))[0].n;

  await redis.stop();
  const first = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, headers });
  t.equal(first.status, 503);
  t.equal(first.body.error.code, 'queue_unavailable');
  const ids: string[] = first.body.error.details.jobIds;
  t.equal(ids.length, 1, 'the answer names the recorded job');
  t.same(Object.keys(first.body.error.details), ['jobIds'], 'and nothing of what Redis said');
  const retried = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, headers });
  t.equal(retried.status, 503, 'still down');
  t.same(retried.body.error.details.jobIds, ids, 'the retry names the same job');
  t.equal(await count(), 1, 'and made no new one');

  const back = new Promise((resolve) => { const stop = svc.service.engine.observe({ reconciled: (ids) => (stop(), resolve(ids)) }); });
  await redis.start();
  await back;
  const replayed = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, headers });
  t.equal(replayed.status, 202);
  t.equal(replayed.body.job.id, ids[0], 'the first answer, with the first job');
  t.equal(replayed.headers.get('idempotent-replayed'), 'true');
  t.equal(await count(), 1);
  const reused = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, headers, body: { expiresInSeconds: 60 } });
  t.equal(reused.status, 422, 'the same key for another request is refused');
  t.equal(reused.body.error.code, 'idempotency_key_reused');
  t.equal(await count(), 1);

  const device = svc.device(mac);
  device.start();
  t.equal((await settled(svc, token, ids[0]!)).state, 'succeeded', 'the job recorded while Redis was down ran once it was back');
  t.equal(device.applications.filter((a) => a.kind === 'reboot').length, 1);
});

t.test('two deployments on one Redis with the same settings never take each other’s jobs', async (t) => {
  const a = await startTestService(t);
  const b = await startTestService(t);
  t.not(a.service.queuePrefix, b.service.queuePrefix, 'each deployment has its own namespace');
  const { token } = await a.createInstaller();
  const macs = Array.from({ length: 12 }, (_, i) => `0C1105F1${i.toString(16).toUpperCase().padStart(4, '0')}`);
  for (const mac of macs) await a.addDevice(token, mac);
  const devices = macs.map((mac) => a.device(mac));
  devices.forEach((d) => d.start());
  await Promise.all(devices.map((d) => once(d, 'hello')));
  const batch = await a.api('POST', '/api/v1/autop/batch', { token, body: { macs, commands: 'Config.Shared.Redis = 1', mode: 'once' } });
  t.equal(batch.status, 202);
  const progress = await waitFor(() => a.api('GET', `/api/v1/autop/batch/${batch.body.batchId}`, { token }).then((r) => r.body), (p) => p.finished);
  t.equal(progress.counts.succeeded, macs.length, 'every job ran in its own deployment');
});

t.test('a job whose twin ended in the failed set is given a live twin again within a reconcile period', async (t) => {
  const svc = await startTestService(t, { RECONCILE_INTERVAL_MS: '300' });
  const { token } = await svc.createInstaller();
  const mac = '0C1105F00004';
  await svc.addDevice(token, mac);
  const job = (await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token })).body.job;
  const prefix = `${svc.service.queuePrefix}:provisioning`;
  const redis = new Redis('redis://127.0.0.1:6379');
  t.teardown(() => redis.quit());
  // The twin waits delayed (the device is offline); put it where BullMQ puts a job out of attempts.
  await waitFor(() => redis.zscore(`${prefix}:delayed`, job.id), (score) => score !== null);
  await redis.multi().zrem(`${prefix}:delayed`, job.id).zadd(`${prefix}:failed`, Date.now(), job.id).hset(`${prefix}:${job.id}`, 'finishedOn', Date.now(), 'failedReason', 'attempts exhausted (test)').exec();

  const device = svc.device(mac);
  device.start();
  t.equal((await settled(svc, token, job.id)).state, 'succeeded', 'the job ran after all');
  t.equal(device.applications.filter((a) => a.id === job.id).length, 1);
});
