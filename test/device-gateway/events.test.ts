import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

// devices/{MAC}/events: a door phone reports a door it opened; the cloud records it once per event id,
// and a malformed event is dropped without ending the session.
const svc = await startTestService(t);
const installer = await svc.createInstaller();
const A = '0C1109000001';
await svc.addDevice(installer.token, A, { type: 0 });
const site = (await svc.api('POST', '/api/v1/sites', { token: installer.token, body: { kind: 'community', name: 'Events', timeZone: 'Europe/Berlin' } })).body;
await svc.api('PATCH', `/api/v1/devices/${A}`, { token: installer.token, body: { siteId: site.id } });

async function connected(mac: string): Promise<RawMqtt> {
  const raw = await RawMqtt.connect(svc.service.ports.mqtt);
  raw.send(raw.connectPacket(mac, mac, deriveDeviceKey(FACTORY_SECRET, mac)));
  if ((await raw.next('connack'))?.returnCode !== 0) throw new Error('connect failed');
  return raw;
}
let messageId = 1;
const publish = async (raw: RawMqtt, payload: unknown) => {
  raw.send({ cmd: 'publish', topic: `devices/${A}/events`, payload: typeof payload === 'string' ? payload : JSON.stringify(payload), qos: 1, messageId: messageId++, dup: false, retain: false } as any);
  return raw.next('puback');
};
const doorEvents = () => svc.api('GET', `/api/v1/sites/${site.id}/door-events`, { token: installer.token });

t.test('a door event is recorded once per event id; malformed events are dropped, the session stays', async (t) => {
  const a = await connected(A);
  for (const bad of ['not json', { type: 'door-opened', eventId: 'e1', relay: 0, method: 'dtmf' }, { type: 'door-opened', eventId: 'e1', relay: 1, method: 'dtmf', extra: true }, { type: 'alarm', eventId: 'e2' }]) {
    t.ok(await publish(a, bad), `acknowledged: ${JSON.stringify(bad)}`);
  }
  t.notOk(a.closed, 'malformed events do not end the session');
  const event = { type: 'door-opened', eventId: 'evt-1', relay: 2, method: 'dtmf', by: '5926100099', callId: 'abc@10.0.0.1', at: '2026-11-29T10:00:00.000Z' };
  await publish(a, event);
  await publish(a, event);
  await publish(a, { ...event, eventId: 'evt-2', relay: 1 });
  await waitFor(doorEvents, (r) => r.body.total >= 2);
  await svc.service.calls.recordDoorEvent(A, event as never); // a third copy, awaited: still one row
  const listed = await doorEvents();
  t.equal(listed.body.total, 2, 'a re-sent event is one door event');
  listed.body.items.sort((x: { relay: number }, y: { relay: number }) => y.relay - x.relay);
  t.match(listed.body.items[0], { mac: A, relay: 2, method: 'dtmf', byStation: '5926100099', callId: 'abc@10.0.0.1', occurredAt: '2026-11-29T10:00:00.000Z' });
  a.end();
});
