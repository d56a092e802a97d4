import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const svc = await startTestService(t);
const installer = await svc.createInstaller();
const MAC = '0C11050B9814';
await svc.addDevice(installer.token, MAC);
const status = async () => (await svc.api('GET', `/api/v1/devices/${MAC}`, { token: installer.token })).body;

t.test('a second connection with the same MAC takes over and closes the first; the device stays online', async (t) => {
  const first = svc.device(MAC);
  first.start();
  await once(first, 'online');
  await waitFor(status, (d) => d.status === 'online');
  const firstGone = once(first, 'offline');
  const second = svc.device(MAC, { firmware: '29.30.10.200' });
  second.start();
  await once(second, 'online');
  await firstGone;
  t.pass('first session closed');
  await waitFor(status, (x) => x.firmware === '29.30.10.200');
  // The broker closed the first session before it let the second in, and the second's hello came after
  // both: once everything marked so far is written, a wrong offline of the takeover would show.
  await svc.service.gateway.flushPresence();
  const d = await status();
  t.equal(d.status, 'online', 'the takeover does not mark the device offline');
  t.equal(svc.service.gateway.connectedDevices, 1);
  await second.stop();
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('a device that goes silent is offline after 1.5 × keepalive', async (t) => {
  const raw = await RawMqtt.connect(svc.service.ports.mqtt);
  raw.send(raw.connectPacket(MAC, MAC, deriveDeviceKey(FACTORY_SECRET, MAC), 1));
  t.equal((await raw.next('connack'))?.returnCode, 0);
  t.equal((await waitFor(status, (x) => x.status === 'online')).status, 'online');
  // No PINGREQ is ever sent: the broker must give up after 1.5 s.
  t.ok(await raw.waitClosed(), 'the gateway closed the silent connection');
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('a dropped connection (power cut) is offline too', async (t) => {
  const device = svc.device(MAC);
  device.start();
  await once(device, 'online');
  await waitFor(status, (x) => x.status === 'online');
  await device.stop(false);
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('devices reconnect by themselves with backoff after the session is cut', async (t) => {
  const device = svc.device(MAC, { reconnect: { minMs: 50, maxMs: 200 } });
  device.start();
  await once(device, 'online');
  const back = new Promise<void>((resolve) => device.once('offline', () => device.once('online', () => resolve())));
  svc.service.gateway.disconnect(MAC, 'test');
  await back;
  t.equal(device.state, 'online', 'reconnected');
  await device.stop();
});

t.test("one device's hello with a NUL in it never freezes presence for the others", async (t) => {
  const bad = '0C1105D00001';
  const good = '0C1105D00002';
  await svc.addDevice(installer.token, bad);
  await svc.addDevice(installer.token, good);
  const raw = await RawMqtt.connect(svc.service.ports.mqtt);
  raw.send(raw.connectPacket(bad, bad, deriveDeviceKey(FACTORY_SECRET, bad)));
  t.equal((await raw.next('connack'))?.returnCode, 0);
  raw.send({ cmd: 'publish', topic: `devices/${bad}/hello`, payload: JSON.stringify({ model: 'R29\u0000', firmware: '29.30.10.112' }), qos: 1, messageId: 1, dup: false, retain: false } as any);
  t.ok(await raw.next('puback'), 'the hello is acknowledged');
  await svc.service.gateway.flushPresence();

  const device = svc.device(good, { model: 'X916', firmware: '916.30.1.5' });
  device.start();
  await once(device, 'hello');
  const seen = await waitFor(
    () => svc.api('GET', `/api/v1/devices/${good}`, { token: installer.token }).then((r) => r.body),
    (d) => d.status === 'online' && d.model === 'X916',
  );
  t.match(seen, { status: 'online', model: 'X916', firmware: '916.30.1.5' }, 'another device shows online with what it reported');
  const badView = (await svc.api('GET', `/api/v1/devices/${bad}`, { token: installer.token })).body;
  t.equal(badView.status, 'online', 'the device that sent it is online too');
  t.equal(badView.model, null, 'its hello was refused at the boundary: no NUL reached the database');
  t.notOk(raw.closed, 'an invalid hello does not end the session');
  raw.end();
  await device.stop();
});

t.test('presence belongs to sessions: an older session ending late never shows a newer one offline', async (t) => {
  const { PresenceStore } = await import('../../src/devices/presence.js');
  const store = new PresenceStore(svc.service.database.db);
  // The earlier tests' stopped devices may not be marked offline yet, and this test counts the gateways
  // holding devices (CI once saw this process's own among them): it begins once none is online.
  await waitFor(() => svc.sql(`SELECT count(*)::int AS n FROM devices WHERE status = 'online'`), (rows) => rows[0].n === 0);
  const mac = '0C11050B9815';
  await svc.addDevice(installer.token, mac);
  const now = new Date();
  const read = async () => (await svc.sql(`SELECT status, session_epoch AS e, session_gateway AS g FROM devices WHERE mac = $1`, [mac]))[0];
  // Session 2 on process B comes online before session 1 on process A has written its end.
  await store.apply([{ mac, status: 'online', epoch: 1000, gateway: 'A', seenAt: now, connectedAt: now }]);
  await store.apply([{ mac, status: 'online', epoch: 2000, gateway: 'B', seenAt: now, connectedAt: now }]);
  await store.apply([{ mac, status: 'offline', epoch: 1000, seenAt: now }]);
  t.same(await read(), { status: 'online', e: '2000', g: 'B' }, 'the late end of session 1 changed nothing');
  // An older session's online arriving after a newer one's changes nothing either.
  await store.apply([{ mac, status: 'online', epoch: 1500, gateway: 'A', seenAt: now }]);
  t.same(await read(), { status: 'online', e: '2000', g: 'B' }, 'a stale online does not take the device back');
  // A start and end of one session merged into one batch: the end lands.
  await store.apply([{ mac, status: 'offline', epoch: 2500, gateway: 'B', seenAt: now, connectedAt: now }]);
  t.equal((await read()).status, 'offline', 'a session that began and ended within one batch ends the device’s presence');
  await store.apply([{ mac, status: 'online', epoch: 2000, gateway: 'B', seenAt: now }]);
  t.equal((await read()).status, 'offline', 'an older start arriving after it changes nothing');
  await store.apply([{ mac, status: 'online', epoch: 2600, gateway: 'B', seenAt: now }]);
  // The newest session's end is written.
  await store.apply([{ mac, status: 'offline', epoch: 2600, seenAt: now }]);
  t.equal((await read()).status, 'offline');
  // A gateway process that died: its devices go offline, others' stay.
  await store.apply([{ mac, status: 'online', epoch: 3000, gateway: 'C', seenAt: now }]);
  t.same(await store.gatewaysHoldingDevices(), ['C']);
  t.equal(await store.markGatewayOffline('D'), 0, 'another process’s death changes nothing');
  t.equal(await store.markGatewayOffline('C'), 1);
  t.equal((await read()).status, 'offline');
});
