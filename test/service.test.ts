import net from 'node:net';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { startService } from '../src/service.js';
import { ADMIN_TOKEN, createTestDatabase, FACTORY_SECRET, once, startTestService } from './helpers/service.js';

t.test('health, readiness, OpenAPI and request ids', async (t) => {
  const svc = await startTestService(t);
  const health = await svc.api('GET', '/healthz', { token: null });
  t.same([health.status, health.body], [200, { status: 'ok' }]);
  const ready = await svc.api('GET', '/readyz', { token: null });
  t.same([ready.status, ready.body], [200, { status: 'ready', checks: { database: 'ok', redis: 'ok', broker: 'ok', sip: 'off' } }]);

  const doc = await svc.api('GET', '/docs/json', { token: null });
  t.equal(doc.status, 200);
  for (const path of ['/api/v1/mac-library', '/api/v1/mac-library/import', '/api/v1/mac-library/{mac}', '/api/v1/devices', '/api/v1/devices/{mac}', '/api/v1/installers', '/readyz', '/api/v1/firmware', '/api/v1/firmware/{id}', '/firmware/{id}/image', '/api/v1/upgrades', '/api/v1/upgrades/{id}', '/api/v1/sites/{siteId}/calls', '/api/v1/sites/{siteId}/door-events', '/api/v1/apartments/{apartmentId}/app-registrations', '/api/v1/app-registrations/{code}', '/api/v1/sites/{siteId}/app-licences', '/api/v1/sites/{siteId}/app-status', '/api/v1/sites/{siteId}/ixg', '/ixg/{mac}/site', '/ixg/{mac}/door-release', '/api/v1/app/address-book', '/api/v1/devices/{mac}/relays/{relay}/open', '/api/v1/devices/{mac}/door-events', '/api/v1/apartments/{apartmentId}/door-events', '/api/v1/property-managers', '/api/v1/sub-installers', '/api/v1/tokens', '/api/v1/sites/{siteId}/residents', '/api/v1/webhooks', '/api/v1/webhooks/{id}', '/api/v1/webhooks/{id}/deliveries', '/api/v1/webhooks/{id}/replay', '/api/v1/webhooks/{id}/rotate-secret', '/api/v1/events']) {
    t.ok(doc.body.paths[path], `OpenAPI documents ${path}`);
  }
  t.ok(doc.body.paths['/api/v1/devices'].post.requestBody, 'request bodies come from the zod schemas');
  t.ok(doc.body.paths['/api/v1/upgrades/{id}'].patch && doc.body.paths['/api/v1/upgrades/{id}'].delete, 'upgrades can be edited and deleted');
  t.same(Object.keys(doc.body.paths['/api/v1/firmware'].post.requestBody?.content?.['multipart/form-data']?.schema?.properties ?? {}), ['model', 'version', 'changelog', 'file'], 'the firmware upload documents its multipart parts');
  const ui = await fetch(`${svc.httpUrl}/docs`, { redirect: 'follow' });
  t.equal(ui.status, 200);
  t.match(await ui.text(), /swagger/i);

  const traced = await fetch(`${svc.httpUrl}/healthz`, { headers: { 'x-request-id': 'trace-123' } });
  t.equal(traced.headers.get('x-request-id'), 'trace-123', 'a caller’s request id is kept');
  t.ok((await fetch(`${svc.httpUrl}/healthz`)).headers.get('x-request-id'), 'otherwise one is made');

  const missing = await svc.api('GET', '/api/v1/nothing-here');
  t.equal(missing.status, 404);
  t.equal(missing.body.error.code, 'not_found');

  svc.service.redis.client.disconnect();
  const notReady = await svc.api('GET', '/readyz', { token: null });
  t.equal(notReady.status, 503);
  t.equal(notReady.body.checks.redis, 'failing');
});

t.test('MQTT port: a taken default falls back to a free port; a taken explicit port is a start-up error', async (t) => {
  // These machines run Mosquitto on 1883; hold it ourselves where nothing does.
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.once('error', () => resolve()).listen(1883, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((r) => (holder.listening ? holder.close(() => r()) : r())));

  const fallback = await startTestService(t, { MQTT_PORT: undefined });
  t.not(fallback.service.ports.mqtt, 1883);
  t.ok(fallback.service.ports.mqtt > 0);

  const databaseUrl = await createTestDatabase(t);
  const config = loadConfig({ DATABASE_URL: databaseUrl, HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', MQTT_HOST: '127.0.0.1', MQTT_PORT: String(fallback.service.ports.mqtt), DEVICE_FACTORY_SECRET: FACTORY_SECRET, ADMIN_TOKEN, LOG_LEVEL: 'silent' });
  await t.rejects(startService(config, createLogger('silent')), /MQTT port \d+ on 127\.0\.0\.1 is not available/);
});

t.test('graceful shutdown finishes in-flight requests and closes device sessions', async (t) => {
  const svc = await startTestService(t);
  const installer = await svc.createInstaller();
  await svc.addDevice(installer.token, '0C11050B9814');
  const device = svc.device('0C11050B9814');
  device.start();
  await once(device, 'online');

  const rows = ['MAC'];
  for (let i = 0; i < 20_000; i++) rows.push(`EE${i.toString(16).toUpperCase().padStart(10, '0')}`);
  // The HTTP server has the request (fastify's handler, registered first, has taken it) before shutdown begins.
  const received = new Promise<void>((resolve) => {
    const seen = (req: { url?: string }) => {
      if (req.url !== '/api/v1/mac-library/import') return;
      svc.service.app.server.off('request', seen);
      resolve();
    };
    svc.service.app.server.on('request', seen);
  });
  const inFlight = svc.api('POST', '/api/v1/mac-library/import', { token: installer.token, raw: rows.join('\n') });
  await received;
  const offline = once(device, 'offline');
  await svc.service.close();
  const res = await inFlight;
  t.equal(res.status, 200, 'the request under way was answered');
  t.equal(res.body.added, 20_000);
  await offline;
  t.pass('the device session was closed');
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(svc.service.ports.mqtt, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
  t.ok(refused, 'no new device connections after shutdown');
  t.equal((await svc.sql("select status from devices where mac = '0C11050B9814'"))[0].status, 'offline', 'presence written before exit');
});
