import { Redis } from 'ioredis';
import t from 'tap';
import { createTestDatabase, once, startTestService, waitFor, type TestService } from '../helpers/service.js';
import { freePort } from '../../src/infra/net.js';
import { SimulatedDevice } from '../../simulators/device-simulator.js';
import { FACTORY_SECRET } from '../helpers/service.js';


const finished = ['succeeded', 'failed', 'expired', 'canceled'];

t.test('a restart of the service mid-dispatch, with Redis losing every job, loses no job and applies none twice', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  const env = { DATABASE_URL: databaseUrl, MQTT_PORT: String(await freePort()), JOB_ACK_TIMEOUT_MS: '500' };
  const first: TestService = await startTestService(t, env);
  const installer = await first.createInstaller();
  await first.addDevice(installer.token, '0C1105AA0001');
  await first.addDevice(installer.token, '0C1105AA0002');

  // Device 1 is online but answers late: its command is in flight when the service stops.
  const slow = new SimulatedDevice({ mac: '0C1105AA0001', url: first.mqttUrl, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: { minMs: 100, maxMs: 300 }, behaviour: { answerDelayMs: 1500 } });
  t.teardown(() => slow.stop(false));
  slow.start();
  await once(slow, 'online');
  await waitFor(() => slow.applications.length, (n) => n >= 1); // boot provisioning done
  const inFlight = await first.api('POST', '/api/v1/devices/0C1105AA0001/autop/once', { token: installer.token, body: { commands: 'Config.Restart.Marker = 1' } });
  // Device 2 is offline: its job waits.
  const waiting = await first.api('POST', '/api/v1/devices/0C1105AA0002/reboot', { token: installer.token });
  await waitFor(() => slow.received.some((c) => c.id === inFlight.body.job.id), Boolean);
  t.ok(slow.received.some((c) => c.id === inFlight.body.job.id), 'the command was delivered');

  await first.service.close();
  const redis = new Redis('redis://127.0.0.1:6379');
  const keys = await redis.keys(`${first.service.queuePrefix}:provisioning:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
  t.ok(keys.length > 0, 'Redis lost every BullMQ job of this queue');

  const second = await startTestService(t, env);
  const token = installer.token;
  const done = await waitFor(() => second.api('GET', `/api/v1/jobs/${inFlight.body.job.id}`, { token }).then((r) => r.body), (j) => finished.includes(j.state));
  t.equal(done.state, 'succeeded', 'the in-flight job finished after the restart');
  t.ok(done.attempts >= 2, `redelivered (${done.attempts} deliveries)`);
  t.equal(slow.applications.filter((a) => a.id === inFlight.body.job.id).length, 1, 'and applied once');
  t.equal(slow.config.get('Config.Restart.Marker'), '1');

  const offline = new SimulatedDevice({ mac: '0C1105AA0002', url: second.mqttUrl, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: { minMs: 100, maxMs: 300 } });
  t.teardown(() => offline.stop(false));
  offline.start();
  const rebooted = await waitFor(() => second.api('GET', `/api/v1/jobs/${waiting.body.job.id}`, { token }).then((r) => r.body), (j) => finished.includes(j.state));
  t.equal(rebooted.state, 'succeeded', 'the waiting job survived the restart and was delivered');
  t.equal(offline.applications.filter((a) => a.kind === 'reboot').length, 1);
});

t.test('a reconnect storm in the middle of dispatch loses no job and applies none twice', async (t) => {
  const svc = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '500' });
  const installer = await svc.createInstaller();
  const macs = Array.from({ length: 40 }, (_, i) => `0C1105BB${i.toString(16).toUpperCase().padStart(4, '0')}`);
  const devices: SimulatedDevice[] = [];
  for (const mac of macs) {
    await svc.addDevice(installer.token, mac);
    devices.push(svc.device(mac, { reconnect: { minMs: 50, maxMs: 400 }, behaviour: { answerDelayMs: 100 } }));
  }
  devices.forEach((d) => d.start());
  await waitFor(() => devices.filter((d) => d.applications.length >= 1).length, (n) => n === macs.length);

  // Every session is cut the moment the first device receives its command of the batch: it has not
  // answered yet (answers take 100 ms), so at least that job is in flight, and most are still to deliver.
  const cut = new Promise<void>((resolve) => {
    const seen = (c: { kind: string }) => {
      if (c.kind !== 'autop-once') return;
      for (const d of devices) d.off('command', seen);
      for (const mac of macs) svc.service.gateway.disconnect(mac, 'test: reconnect storm'); // every session cut mid-dispatch
      resolve();
    };
    for (const d of devices) d.on('command', seen);
  });
  const batch = await svc.api('POST', '/api/v1/autop/batch', { token: installer.token, body: { macs, commands: 'Config.Storm.Value = 1', mode: 'once' } });
  t.equal(batch.status, 202);
  await cut;
  const progress = await waitFor(
    () => svc.api('GET', `/api/v1/autop/batch/${batch.body.batchId}`, { token: installer.token }).then((r) => r.body),
    (p) => p.finished,
  );
  t.equal(progress.counts.succeeded, macs.length, 'every job succeeded');
  const ids = new Set(batch.body.jobs.map((j: any) => j.id));
  const applications = devices.flatMap((d) => d.applications.filter((a) => ids.has(a.id)));
  t.equal(applications.length, macs.length, 'each applied exactly once');
});
