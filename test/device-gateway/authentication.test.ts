import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const svc = await startTestService(t, { AUTH_FAILURES_PER_MINUTE: '3', MQTT_MAX_CONNECTIONS: '6' });
const installer = await svc.createInstaller();
await svc.addDevice(installer.token, '0C11050B9814');
await svc.api('POST', '/api/v1/mac-library', { token: installer.token, body: { mac: '0C11050B9815' } });
const mqttPort = svc.service.ports.mqtt;

t.test('a registered device with its key connects and shows online with what it said in hello', async (t) => {
  const device = svc.device('0C11050B9814', { model: 'R29', firmware: '29.30.10.112' });
  device.start();
  await once(device, 'online');
  const res = await waitFor(
    () => svc.api('GET', '/api/v1/devices/0C11050B9814', { token: installer.token }),
    (r) => r.body.status === 'online' && r.body.model === 'R29',
  );
  t.match(res.body, { status: 'online', model: 'R29', firmware: '29.30.10.112', ip: '127.0.0.1' });
  t.ok(Date.parse(res.body.lastConnectedAt) > Date.now() - 60_000);
  const entry = await svc.api('GET', '/api/v1/mac-library/0C11050B9814', { token: installer.token });
  t.ok(entry.body.lastSeenAt, 'the MAC library records when the MAC was last seen');
  await device.stop();
  const off = await waitFor(
    () => svc.api('GET', '/api/v1/devices/0C11050B9814', { token: installer.token }),
    (r) => r.body.status === 'offline',
  );
  t.equal(off.body.status, 'offline', 'offline after disconnect');
});

t.test('a MAC in the library without a device record may connect (it is registered hardware)', async (t) => {
  const device = svc.device('0C11050B9815');
  device.start();
  await once(device, 'online');
  t.equal(device.state, 'online');
  await device.stop();
});

t.test('unregistered MACs, wrong keys and mismatched client ids are refused', async (t) => {
  const unknown = svc.device('DEADBEEF0001', { localAddress: '127.0.0.2' });
  unknown.start();
  t.equal(await once(unknown, 'refused'), 5, 'not in the MAC library: not authorized');

  const wrongKey = svc.device('0C11050B9814', { key: deriveDeviceKey('another-secret-0123456789', '0C11050B9814'), localAddress: '127.0.0.2' });
  wrongKey.start();
  t.equal(await once(wrongKey, 'refused'), 4, 'wrong key: bad user name or password');

  const raw = await RawMqtt.connect(mqttPort, '127.0.0.3');
  raw.send(raw.connectPacket('0C11050B9815', '0C11050B9814', deriveDeviceKey(FACTORY_SECRET, '0C11050B9814')));
  t.equal((await raw.next('connack'))?.returnCode, 5, 'client id differs from user name: not authorized');
  raw.end();

  const lower = await RawMqtt.connect(mqttPort, '127.0.0.4');
  lower.send(lower.connectPacket('0c11050b9814', '0c11050b9814', deriveDeviceKey(FACTORY_SECRET, '0c11050b9814')));
  t.equal((await lower.next('connack'))?.returnCode, 4, 'user name must be the canonical MAC');
  lower.end();

  const noPassword = await RawMqtt.connect(mqttPort, '127.0.0.4');
  noPassword.send(noPassword.connectPacket('0C11050B9814', '0C11050B9814'));
  t.equal((await noPassword.next('connack'))?.returnCode, 4);
  noPassword.end();
});

t.test('repeated failures from one address are rate limited; other addresses are not affected', async (t) => {
  for (let i = 0; i < 3; i++) {
    const raw = await RawMqtt.connect(mqttPort, '127.0.0.7');
    raw.send(raw.connectPacket('0C11050B9814', '0C11050B9814', 'f'.repeat(64)));
    t.equal((await raw.next('connack'))?.returnCode, 4);
    raw.end();
  }
  const good = svc.device('0C11050B9814', { localAddress: '127.0.0.7' });
  good.start();
  t.equal(await once(good, 'refused'), 5, 'even the right key is refused from a blocked address');
  const elsewhere = svc.device('0C11050B9814', { localAddress: '127.0.0.8' });
  elsewhere.start();
  await once(elsewhere, 'online');
  t.pass('the same device connects from another address');
  await elsewhere.stop();
});

t.test('connections beyond the configured maximum are refused with "server unavailable"', async (t) => {
  await waitFor(() => svc.service.gateway.connections, (n) => n === 0);
  const held: RawMqtt[] = [];
  for (let i = 0; i < 6; i++) held.push(await RawMqtt.connect(mqttPort));
  await waitFor(() => svc.service.gateway.connections, (n) => n === 6);
  const over = await RawMqtt.connect(mqttPort);
  t.equal((await over.next('connack'))?.returnCode, 3);
  t.ok(await over.waitClosed(), 'and closed');
  held.pop()!.end();
  await waitFor(() => svc.service.gateway.connections, (n) => n === 5);
  const again = await RawMqtt.connect(mqttPort, '127.0.0.9');
  again.send(again.connectPacket('0C11050B9814', '0C11050B9814', deriveDeviceKey(FACTORY_SECRET, '0C11050B9814')));
  t.equal((await again.next('connack'))?.returnCode, 0, 'accepted again below the maximum');
  for (const c of [...held, again]) c.end();
});

t.test('removing a MAC from the library closes its session and refuses it afterwards', async (t) => {
  await svc.api('POST', '/api/v1/mac-library', { token: installer.token, body: { mac: '0C11050B9816' } });
  const device = svc.device('0C11050B9816', { localAddress: '127.0.0.10' });
  device.start();
  await once(device, 'online');
  const offline = once(device, 'offline');
  t.equal((await svc.api('DELETE', '/api/v1/mac-library/0C11050B9816', { token: installer.token })).status, 204);
  await offline;
  const again = svc.device('0C11050B9816', { localAddress: '127.0.0.10' });
  again.start();
  t.equal(await once(again, 'refused'), 5);
});

t.test('deleting a device closes its session', async (t) => {
  const device = svc.device('0C11050B9814', { localAddress: '127.0.0.11' });
  device.start();
  await once(device, 'online');
  const offline = once(device, 'offline');
  t.equal((await svc.api('DELETE', '/api/v1/devices/0C11050B9814', { token: installer.token })).status, 204);
  await offline;
  t.pass('session closed');
});

t.test('failures are limited per MAC and address: a valid device behind the same address is never refused for a neighbour', async (t) => {
  // A misconfigured device behind a site's NAT keeps presenting a wrong key.
  for (let i = 0; i < 5; i++) {
    const raw = await RawMqtt.connect(mqttPort, '127.0.0.9');
    raw.send(raw.connectPacket('0C11050B9815', '0C11050B9815', 'f'.repeat(64)));
    t.equal((await raw.next('connack'))?.returnCode, i < 3 ? 4 : 5, i < 3 ? 'wrong key' : 'that MAC is now refused from this address');
    raw.end();
  }
  const neighbour = svc.device('0C11050B9814', { localAddress: '127.0.0.9' });
  neighbour.start();
  await once(neighbour, 'online');
  t.equal(neighbour.state, 'online', 'another device behind the same address connects with its key');
  await neighbour.stop();
});

t.test('only MQTT 3.1.1 is accepted: an MQTT 3.1 CONNECT gets CONNACK 1', async (t) => {
  const raw = await RawMqtt.connect(mqttPort);
  const key = deriveDeviceKey(FACTORY_SECRET, '0C11050B9814');
  raw.send({ ...raw.connectPacket('0C11050B9814', '0C11050B9814', key), protocolId: 'MQIsdp', protocolVersion: 3 } as any);
  t.equal((await raw.next('connack'))?.returnCode, 1, 'unacceptable protocol version');
  t.ok(await raw.waitClosed(), 'and the connection is closed');
});

t.test('user names that are no MAC of the library count together per address; devices of the library are unaffected', async (t) => {
  for (let i = 0; i < 4; i++) {
    const raw = await RawMqtt.connect(mqttPort, '127.0.0.10');
    const name = `0C1105FF${i.toString(16).padStart(4, '0')}`; // well-formed, never registered: a new name each time
    raw.send(raw.connectPacket(name, name, 'f'.repeat(64)));
    t.equal((await raw.next('connack'))?.returnCode, 5, i < 3 ? 'not in the MAC library' : 'rate limited: inventing names does not escape the limit');
    raw.end();
  }
  const member = svc.device('0C11050B9814', { localAddress: '127.0.0.10' });
  member.start();
  await once(member, 'online');
  t.equal(member.state, 'online', 'a device of the library still connects from that address');
  await member.stop();
});
