import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startProcess } from '../../src/service.js';
import { ADMIN_TOKEN, FACTORY_SECRET, apiClient, createTestDatabase, installerActions, removeQueues, startTestService, waitFor } from '../helpers/service.js';

// Tokens and device owners are kept in memory on the job request path: a revoked token, a deleted device
// and another installer's device must be refused at once all the same, in this process and in the others.

const once = (mac: string) => `/api/v1/devices/${mac}/autop/once`;
const body = { commands: 'Config.Test.Cache = 1' };

t.test('one process: revoked tokens, deleted devices and other installers stay refused after caching', async (t) => {
  const svc = await startTestService(t);
  const alice = await svc.createInstaller('Alice');
  const bob = await svc.createInstaller('Bob');
  await svc.addDevice(alice.token, '0C1118000001');
  await svc.addDevice(bob.token, '0C1118000002');
  const post = (token: string, mac: string) => svc.api('POST', once(mac), { token, body });

  // Warm both caches: the token and the owner of each device are read and kept.
  t.equal((await post(alice.token, '0C1118000001')).status, 202);
  t.equal((await post(bob.token, '0C1118000002')).status, 202);
  for (let i = 0; i < 2; i++) {
    const foreign = await post(alice.token, '0C1118000002');
    t.equal(foreign.status, 404, "another installer's device is not found, also once its owner is cached");
    t.match(foreign.body.error, { code: 'not_found', details: { mac: '0C1118000002' } });
  }
  t.equal((await svc.api('GET', '/api/v1/devices/0C1118000002/autop', { token: alice.token })).status, 404, "nor is its Autop readable");
  t.equal((await post(ADMIN_TOKEN, '0C1118000002')).status, 202, 'the distributor reaches every device');

  // A second token of Alice's, used (cached), then revoked: refused at the very next request.
  const issued = await svc.api('POST', '/api/v1/installers', { body: { name: 'Carol', email: 'carol@installer.test' } });
  const carol = issued.body.token as { id: string; token: string };
  await svc.addDevice(carol.token, '0C1118000003');
  t.equal((await post(carol.token, '0C1118000003')).status, 202);
  t.equal((await svc.api('DELETE', `/api/v1/tokens/${carol.id}`, { token: carol.token })).status, 204);
  const revoked = await post(carol.token, '0C1118000003');
  t.equal(revoked.status, 401, 'a revoked token is refused at once although it was cached');
  t.equal(revoked.body.error.code, 'unauthorized');

  // Alice's device, its owner cached, deleted: the next job request for it is a 404, and a job for a device
  // bound to the MAC again by someone else is refused to Alice.
  t.equal((await svc.api('DELETE', '/api/v1/devices/0C1118000001', { token: alice.token })).status, 204);
  t.equal((await post(alice.token, '0C1118000001')).status, 404, 'a deleted device is refused at once');
  await svc.api('DELETE', '/api/v1/mac-library/0C1118000001', { token: alice.token });
  await svc.addDevice(bob.token, '0C1118000001');
  t.equal((await post(alice.token, '0C1118000001')).status, 404, "the MAC bound again is the new owner's");
  t.equal((await post(bob.token, '0C1118000001')).status, 202);
});

t.test('two API processes: a revocation and a deletion made in one reach the other over the bus', async (t) => {
  const db = await createTestDatabase(t);
  const a = await apiProcess(t, db);
  const b = await apiProcess(t, db);
  const issued = await a.api('POST', '/api/v1/installers', { body: { name: 'Dana', email: 'dana@installer.test' } });
  const dana = issued.body.token as { id: string; token: string };
  await a.addDevice(dana.token, '0C1118000010');
  await a.addDevice(dana.token, '0C1118000011');
  const post = (svc: Awaited<ReturnType<typeof apiProcess>>, mac: string) => svc.api('POST', once(mac), { token: dana.token, body });
  // b keeps the token and both owners.
  t.equal((await post(b, '0C1118000010')).status, 202);
  t.equal((await post(b, '0C1118000011')).status, 202);

  t.equal((await a.api('DELETE', '/api/v1/devices/0C1118000010', { token: dana.token })).status, 204);
  // Polled for at most 5 s: far below the caches' 60 s lifetime, so only the bus can make it pass.
  await waitFor(() => post(b, '0C1118000010').then((r) => r.status), (s) => s !== 202, 5000);
  t.equal((await post(b, '0C1118000010')).status, 404, 'the other process refuses the deleted device');
  t.equal((await post(b, '0C1118000011')).status, 202, 'and still serves the others');

  t.equal((await a.api('DELETE', `/api/v1/tokens/${dana.id}`, { token: dana.token })).status, 204);
  t.equal((await post(a, '0C1118000011')).status, 401, 'refused at once where it was revoked');
  await waitFor(() => post(b, '0C1118000011').then((r) => r.status), (s) => s !== 202, 5000);
  t.equal((await post(b, '0C1118000011')).status, 401, 'and in the other process once the bus told it');
});

/** An API process of a cluster (role `api`: its events travel over the Redis bus) on a shared database. */
async function apiProcess(t: { teardown(fn: () => unknown): void }, databaseUrl: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'icloud-test-'));
  const config = loadConfig({
    ROLE: 'api',
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    DEVICE_FACTORY_SECRET: FACTORY_SECRET,
    ADMIN_TOKEN,
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SIP_SERVER: 'off',
    DATABASE_URL: databaseUrl,
  });
  const p = await startProcess(config, createLogger(config.logLevel), { PATH: process.env.PATH });
  t.teardown(async () => {
    await p.close();
    await removeQueues(config.redis.url, p.queuePrefix);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const api = apiClient(`http://127.0.0.1:${p.ports.http}`);
  return { api, ...installerActions(api) };
}
