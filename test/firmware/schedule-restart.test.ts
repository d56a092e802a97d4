import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import t from 'tap';
import { freePort } from '../../src/infra/net.js';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { createTestDatabase, startTestService, waitFor } from '../helpers/service.js';

t.test('a scheduled upgrade survives a restart of the service, even one where Redis lost it, and starts once', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'icloud-schedule-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { DATABASE_URL: await createTestDatabase(t), DATA_DIR: dataDir, MQTT_PORT: String(await freePort()) };
  const first = await startTestService(t, env);
  const installer = await first.createInstaller();
  const token = installer.token;
  const fw = (await uploadFirmware(first, { model: 'R29', version: '29.30.10.200' })).body;
  const mac = '0C1105E00001';
  await knownDevice(first, token, mac, { offline: true });

  const at = new Date(Date.now() + 4000);
  const created = await first.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac], at: at.toISOString() } });
  t.equal(created.body.status, 'pending');
  await first.service.close();
  // Redis keeps nothing on disk here: a Redis restart loses the delayed job. The service schedules it again.
  const redis = new Redis('redis://127.0.0.1:6379');
  const keys = await redis.keys(`${first.service.queuePrefix}:upgrades:*`);
  t.ok(keys.length > 0, 'the start was scheduled in Redis');
  await redis.del(...keys);
  await redis.quit();

  const second = await startTestService(t, env);
  const device = second.device(mac, { reconnect: { minMs: 50, maxMs: 100 } });
  device.start();
  const done = await waitFor(() => second.api('GET', `/api/v1/upgrades/${created.body.id}`, { token }).then((r) => r.body), (u) => u.status === 'executed', undefined, 100);
  t.equal(done.status, 'executed');
  t.equal(done.succeeded, 1);
  t.ok(new Date(done.startedAt).getTime() >= at.getTime() - 1000, 'not before its time');
  t.equal(device.firmware, '29.30.10.200');
  t.equal(Number((await second.sql('SELECT count(*) AS n FROM jobs WHERE batch_id = $1', [created.body.id]))[0].n), 1, 'started once');

  // Firing again (a duplicate delayed job) starts nothing.
  t.same(await second.service.upgrades.start(created.body.id), [], 'a second start is a no-op');
});
