import mqttPacket from 'mqtt-packet';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const svc = await startTestService(t);
const installer = await svc.createInstaller();
const A = '0C11050B9814';
const B = '0C11050B9815';
await svc.addDevice(installer.token, A);
await svc.addDevice(installer.token, B);
const port = svc.service.ports.mqtt;
const JOB = '7b0c3a52-5d43-4c1e-9e55-8f1f0b2a6a10';

async function connected(mac: string): Promise<RawMqtt> {
  const raw = await RawMqtt.connect(port);
  raw.send(raw.connectPacket(mac, mac, deriveDeviceKey(FACTORY_SECRET, mac)));
  const connack = await raw.next('connack');
  if (connack?.returnCode !== 0) throw new Error(`connect failed: ${JSON.stringify(connack)}`);
  return raw;
}

const subscribe = (raw: RawMqtt, topic: string, messageId = 1) => raw.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: 1 }] } as any);
const publish = (raw: RawMqtt, topic: string, payload: string | Buffer, qos: 0 | 1 = 1, messageId = 10) =>
  raw.send({ cmd: 'publish', topic, payload, qos, messageId, dup: false, retain: false } as any);

t.test('a device may subscribe only to its own commands topic', async (t) => {
  const a = await connected(A);
  for (const [i, topic] of [`devices/${B}/commands`, 'devices/#', `devices/${A}/#`, '#', `devices/${A}/hello`, '$SYS/#'].entries()) {
    subscribe(a, topic, i + 1);
    t.same((await a.next('suback'))?.granted, [128], `refused: ${topic}`);
  }
  subscribe(a, `devices/${A}/commands`, 20);
  t.same((await a.next('suback'))?.granted, [1], 'own commands topic granted');
  t.notOk(a.closed, 'refused subscriptions do not end the session');
  a.end();
});

t.test("one device can never read another's commands", async (t) => {
  const a = await connected(A);
  subscribe(a, `devices/${A}/commands`);
  await a.next('suback');
  const b = await connected(B);
  subscribe(b, `devices/${B}/commands`);
  await b.next('suback');
  await svc.service.gateway.publish(B, { id: 'x' });
  const got = await b.next('publish');
  t.equal(got?.topic, `devices/${B}/commands`, 'B gets its command');
  // A command for A published after B's: had B's reached A, it would have come first.
  await svc.service.gateway.publish(A, { id: 'for-a' });
  const first = await a.next('publish');
  t.same([first?.topic, JSON.parse(String(first?.payload)).id], [`devices/${A}/commands`, 'for-a'], "A gets only its own command, not B's");
  a.end();
  b.end();
});

t.test("a device publishing outside its own topics is disconnected and nothing is routed", async (t) => {
  const b = await connected(B);
  subscribe(b, `devices/${B}/commands`);
  await b.next('suback');
  const a = await connected(A);
  publish(a, `devices/${B}/commands`, '{"id":"forged"}');
  t.ok(await a.waitClosed(), 'A is disconnected');
  // A command for B published after the forged one: had the forged one been routed, it would have come first.
  await svc.service.gateway.publish(B, { id: 'after' });
  const first = await b.next('publish');
  t.equal(JSON.parse(String(first?.payload)).id, 'after', 'B never sees the forged command');
  for (const topic of [`devices/${B}/hello`, 'devices', `devices/${A}`, `other/${A}/x`, `devices/${A}/commands`]) {
    const c = await connected(A);
    publish(c, topic, '{}');
    t.ok(await c.waitClosed(), `refused: ${topic}`);
  }
  b.end();
});

t.test('a device publishes only to hello, events and commands/{id}/status: any other topic of its own closes the session', async (t) => {
  for (const topic of [`devices/${A}/foo`, `devices/${A}/commands`, `devices/${A}/commands/${JOB}`, `devices/${A}/commands/${JOB}/status/x`, `devices/${A}/hello/x`, `devices/${A}/events/door`, `devices/${A}/status`]) {
    const c = await connected(A);
    publish(c, topic, '{}');
    t.ok(await c.waitClosed(), `refused: ${topic}`);
  }
  const fine = await connected(A);
  for (const [i, topic] of [`devices/${A}/hello`, `devices/${A}/events`, `devices/${A}/commands/${JOB}/status`, `devices/${A}/commands/not-a-job/status`].entries()) {
    publish(fine, topic, '{}', 1, 30 + i);
    t.equal((await fine.next('puback'))?.messageId, 30 + i, `accepted: ${topic}`);
  }
  t.notOk(fine.closed, 'the session stays');
  fine.end();
});

t.test('every session is clean: the broker keeps no subscription for a device between connections', async (t) => {
  const first = await RawMqtt.connect(port);
  first.send({ ...first.connectPacket(A, A, deriveDeviceKey(FACTORY_SECRET, A)), clean: false } as any);
  t.equal((await first.next('connack'))?.returnCode, 0);
  subscribe(first, `devices/${A}/commands`);
  await first.next('suback');
  first.send({ cmd: 'disconnect' } as any);
  await first.waitClosed();
  const again = await RawMqtt.connect(port);
  again.send({ ...again.connectPacket(A, A, deriveDeviceKey(FACTORY_SECRET, A)), clean: false } as any);
  const connack = await again.next('connack');
  t.equal(connack?.returnCode, 0);
  t.equal(connack?.sessionPresent, false, 'no session is present');
  publish(again, `devices/${A}/hello`, JSON.stringify({ model: 'R29', firmware: '29.30.10.112' }));
  await waitFor(() => svc.service.gateway.connectedSince(A), (since) => since !== null);
  // QoS 1 keeps order: had the subscription outlived the first connection, `early` would arrive first.
  await svc.service.gateway.publish(A, { id: 'early', kind: 'reboot', params: {} });
  subscribe(again, `devices/${A}/commands`, 2);
  await again.next('suback');
  await svc.service.gateway.publish(A, { id: 'late', kind: 'reboot', params: {} });
  const got = await again.next('publish');
  t.equal(JSON.parse(got?.payload.toString()).id, 'late', 'what was published before it subscribed again never reached it');
  again.end();
});

t.test('topics too deep or too long and payloads over 64 KiB are refused', async (t) => {
  const deep = await connected(A);
  publish(deep, `devices/${A}/a/b/c/d/e/f/g`, '{}');
  t.ok(await deep.waitClosed(), 'too deep');
  const long = await connected(A);
  publish(long, `devices/${A}/${'x'.repeat(300)}`, '{}');
  t.ok(await long.waitClosed(), 'too long');
  const big = await connected(A);
  publish(big, `devices/${A}/events`, Buffer.alloc(64 * 1024 + 1));
  t.ok(await big.waitClosed(), 'payload just over 64 KiB');
  const huge = await connected(A);
  // Declares a 200 MB packet: refused at its header, before any body is buffered.
  huge.send(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x64]));
  t.ok(await huge.waitClosed(), 'declared 200 MB');
  const fine = await connected(A);
  publish(fine, `devices/${A}/events`, Buffer.alloc(64 * 1024));
  t.ok(await fine.next('puback'), 'exactly 64 KiB is accepted');
  fine.end();
});

t.test('malformed packets and invalid hellos never crash the gateway', async (t) => {
  const garbage = await RawMqtt.connect(port);
  garbage.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  t.ok(await garbage.waitClosed(), 'garbage closed');
  const badConnect = await RawMqtt.connect(port);
  badConnect.send(Buffer.from([0x10, 0x04, 0x00, 0x04, 0x4d, 0x51]));
  badConnect.send(Buffer.from([0xf0, 0x00]));
  t.ok(await badConnect.waitClosed(), 'truncated CONNECT and reserved packet type closed');
  const publishFirst = await RawMqtt.connect(port);
  publishFirst.send(mqttPacket.generate({ cmd: 'publish', topic: `devices/${A}/hello`, payload: Buffer.from('{}'), qos: 0, dup: false, retain: false } as any));
  t.ok(await publishFirst.waitClosed(), 'publish before CONNECT closed');

  const before = (await svc.api('GET', `/api/v1/devices/${A}`, { token: installer.token })).body;
  const a = await connected(A);
  publish(a, `devices/${A}/hello`, 'not json {');
  t.ok(await a.next('puback'), 'invalid JSON hello is acknowledged but ignored');
  publish(a, `devices/${A}/hello`, JSON.stringify({ model: 7, firmware: '' }), 1, 11);
  t.ok(await a.next('puback'));
  // Fields the protocol does not name are ignored in a hello (docs/device-protocol.md, "Compatibility").
  publish(a, `devices/${A}/hello`, JSON.stringify({ model: 'S532', firmware: '532.30.10.117', ip: '10.0.0.5', uptime: 12, vendorBuild: 'x7', features: ['rtsp'] }), 1, 12);
  t.ok(await a.next('puback'));
  const after = await waitFor(
    () => svc.api('GET', `/api/v1/devices/${A}`, { token: installer.token }),
    (r) => r.body.model === 'S532',
  );
  t.not(before.model, 'S532');
  t.match(after.body, { model: 'S532', firmware: '532.30.10.117', ip: '10.0.0.5', status: 'online' });
  t.notOk(a.closed);
  a.end();

  const healthy = svc.device(B);
  healthy.start();
  await once(healthy, 'online');
  t.pass('the gateway still serves devices');
  await healthy.stop();
});

t.test('retained messages and QoS 2 are refused: a device cannot make the broker hold messages', async (t) => {
  for (let i = 0; i < 3; i++) {
    const c = await connected(A);
    c.send({ cmd: 'publish', topic: [`devices/${A}/events`, `devices/${A}/hello`, `devices/${A}/commands/${JOB}/status`][i]!, payload: Buffer.alloc(60 * 1024, 1), qos: 1, messageId: 5, dup: false, retain: true } as any);
    t.ok(await c.waitClosed(), `retained publish ${i} closes the session`);
  }
  t.equal(await svc.service.gateway.retainedCount(), 0, 'the broker holds no retained message');
  const q2 = await connected(A);
  q2.send({ cmd: 'publish', topic: `devices/${A}/events`, payload: Buffer.from('{}'), qos: 2, messageId: 6, dup: false, retain: false } as any);
  t.ok(await q2.waitClosed(), 'a QoS 2 publish closes the session');
  const fine = await connected(A);
  publish(fine, `devices/${A}/events`, '{}');
  t.ok(await fine.next('puback'), 'QoS 1 without retain is accepted');
  fine.end();
});

t.test('a will a device sets is dropped: a dropped connection never publishes it', async (t) => {
  const raw = await RawMqtt.connect(port);
  const will = { topic: `devices/${A}/hello`, payload: Buffer.from(JSON.stringify({ model: 'WILL', firmware: '0.0.0.1' })), qos: 1, retain: false };
  raw.send({ ...raw.connectPacket(A, A, deriveDeviceKey(FACTORY_SECRET, A)), will } as any);
  t.equal((await raw.next('connack'))?.returnCode, 0);
  await waitFor(() => svc.api('GET', `/api/v1/devices/${A}`, { token: installer.token }).then((r) => r.body.status), (s) => s === 'online');
  raw.end(); // an unclean disconnect: a will would be published now
  await waitFor(() => svc.api('GET', `/api/v1/devices/${A}`, { token: installer.token }).then((r) => r.body.status), (s) => s === 'offline');
  await svc.service.gateway.flushPresence();
  t.not((await svc.api('GET', `/api/v1/devices/${A}`, { token: installer.token })).body.model, 'WILL', 'the will was not taken as a hello');
});
