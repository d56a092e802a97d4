import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

// devices/{MAC}/events: a door phone reports a door it opened; the cloud records it once per event id,
// refuses a relay the device does not have, marks what it could verify (the call, who released it, the
// time), and drops what a device sends beyond its rate. A malformed event is dropped without ending the session.
const LIMIT = 20;
const svc = await startTestService(t, { DEVICE_EVENTS_PER_MINUTE: String(LIMIT) });
const installer = await svc.createInstaller();
const bob = await svc.createInstaller('Bob');
const api = (token: string) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, body });
const A = api(installer.token);
const B = api(bob.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 201) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

// Alice's site: two door phones with one relay each at building A, a monitor in apartment 101.
const site = await ok(A('POST', '/sites', { kind: 'community', name: 'Events', timeZone: 'Europe/Berlin' }));
const building = await ok(A('POST', `/sites/${site.id}/buildings`, { name: 'A' }));
const flat = await ok(A('POST', `/buildings/${building.id}/apartments`, { number: '101' }));
const DOOR = '0C1109000001';
const OTHER_DOOR = '0C1109000002';
const MONITOR = '0C1109000003';
const FLOOD = '0C1109000004';
const relays = [{ name: 'Gate', dtmf: '#', enabled: true }];
const door = (await svc.addDevice(installer.token, DOOR, { type: 0, relays })).sip.number as string;
const otherDoor = (await svc.addDevice(installer.token, OTHER_DOOR, { type: 0, relays })).sip.number as string;
const monitor = (await svc.addDevice(installer.token, MONITOR, { type: 2 })).sip.number as string;
await svc.addDevice(installer.token, FLOOD, { type: 0, relays });
for (const mac of [DOOR, OTHER_DOOR, FLOOD]) await ok(A('PATCH', `/devices/${mac}`, { siteId: site.id, buildingId: building.id }), 200);
await ok(A('PATCH', `/devices/${MONITOR}`, { siteId: site.id, apartmentId: flat.id }), 200);

// Bob's app station, in Bob's own site.
const bobSite = await ok(B('POST', '/sites', { kind: 'community', name: 'Bob', timeZone: 'UTC' }));
const bobFlat = await ok(B('POST', `/buildings/${(await ok(B('POST', `/sites/${bobSite.id}/buildings`, { name: 'X' }))).id}/apartments`, { number: '1' }));
await ok(B('PUT', `/sites/${bobSite.id}/app-licences`, { units: 1 }), 200);
const bobCode = await ok(B('POST', `/apartments/${bobFlat.id}/app-registrations`));
const bobApp = (await ok(svc.api('POST', `/api/v1/app-registrations/${bobCode.code}`, { token: null, body: {} }))).station.sipNumber as string;

/** A call as Kamailio reports it to the back end: routed, then answered by `answeredBy`. */
async function answeredCall(caller: string, dialled: string, callId: string, answeredBy: string) {
  const { plan } = await svc.service.calls.route(caller, dialled, callId);
  if (plan.action === 'refuse') throw new Error(`call refused: ${JSON.stringify(plan)}`);
  await svc.service.calls.callEvent({ event: 'answered', callId, by: answeredBy });
}

async function connected(mac: string): Promise<RawMqtt> {
  const raw = await RawMqtt.connect(svc.service.ports.mqtt);
  raw.send(raw.connectPacket(mac, mac, deriveDeviceKey(FACTORY_SECRET, mac)));
  if ((await raw.next('connack'))?.returnCode !== 0) throw new Error('connect failed');
  return raw;
}
let messageId = 1;
const publish = async (raw: RawMqtt, payload: unknown, mac = DOOR) => {
  raw.send({ cmd: 'publish', topic: `devices/${mac}/events`, payload: typeof payload === 'string' ? payload : JSON.stringify(payload), qos: 1, messageId: messageId++, dup: false, retain: false } as any);
  return raw.next('puback');
};
const doorEvents = () => A('GET', `/sites/${site.id}/door-events?pageSize=100`);
const eventsOf = async (mac: string) => (await doorEvents()).body.items.filter((e: { mac: string }) => e.mac === mac);

/** The gateway's count of device events by result, as /metrics shows it. */
async function eventCounts(): Promise<Record<string, number>> {
  const text = (await svc.api('GET', '/metrics')).body as string;
  const counts: Record<string, number> = {};
  for (const m of text.matchAll(/^intercom_gateway_device_events_total\{[^}]*result="([a-z_]+)"[^}]*\} ([0-9.e+]+)$/gm)) counts[m[1]!] = (counts[m[1]!] ?? 0) + Number(m[2]);
  return counts;
}
/** Waits until the counts grew by `delta` from `before`, and answers them. */
const countsGrown = (before: Record<string, number>, delta: Record<string, number>) =>
  waitFor(eventCounts, (now) => Object.entries(delta).every(([k, d]) => (now[k] ?? 0) - (before[k] ?? 0) === d));

let seq = 0;
const dtmf = (fields: Record<string, unknown>) => ({ type: 'door-opened', eventId: `e${++seq}`, relay: 1, method: 'dtmf', ...fields });

t.test('a door event is recorded once per event id; malformed events are dropped, the session stays', async (t) => {
  const a = await connected(DOOR);
  const before = await eventCounts();
  for (const bad of ['not json', { type: 'door-opened', eventId: 'e1', relay: 0, method: 'dtmf' }, { type: 'door-opened', eventId: 'e1', relay: 1, method: 'dtmf', extra: true }, { type: 'alarm', eventId: 'e2' }, { type: 'door-opened', eventId: 'e3', relay: 1, method: 'card', floors: ['129'] }, { type: 'door-opened', eventId: 'e4', relay: 1, method: 'card', floors: ['5', '5'] }]) {
    t.ok(await publish(a, bad), `acknowledged: ${JSON.stringify(bad)}`);
  }
  t.notOk(a.closed, 'malformed events do not end the session');
  const event = { type: 'door-opened', eventId: 'evt-1', relay: 1, method: 'pin' };
  await publish(a, event);
  await publish(a, event);
  await publish(a, { ...event, eventId: 'evt-2', method: 'card' });
  await countsGrown(before, { invalid: 6, recorded: 3 });
  await svc.service.calls.recordDoorEvent(DOOR, event as never); // a fourth copy, awaited: still one row
  const listed = await eventsOf(DOOR);
  t.equal(listed.length, 2, 'a re-sent event is one door event');
  t.match(listed.find((e: { method: string }) => e.method === 'pin'), { mac: DOOR, relay: 1, byStation: null, callId: null, floors: null, reportedAt: null, verified: { relay: true, call: null, by: null, at: null } });
  a.end();
});

t.test('forged door events: a relay the device lacks is refused; claims the cloud cannot confirm are stored unverified', async (t) => {
  const a = await connected(DOOR);
  const before = await eventCounts();
  const myCall = 'mine@10.0.0.1';
  const theirCall = 'theirs@10.0.0.2';
  await answeredCall(door, '101', myCall, monitor);
  await answeredCall(otherDoor, '101', theirCall, monitor);

  await publish(a, dtmf({ relay: 5, by: monitor, callId: myCall }));
  await countsGrown(before, { refused: 1 });
  t.notOk((await eventsOf(DOOR)).some((e: { relay: number }) => e.relay === 5), 'relay 5 of a one-relay door phone is not recorded');
  t.notOk(a.closed, 'the session stays');

  await publish(a, dtmf({ by: bobApp, callId: 'invented@10.9.9.9' }));
  await publish(a, dtmf({ by: monitor, callId: theirCall }));
  await publish(a, dtmf({ by: door, callId: myCall }));
  await publish(a, dtmf({}));
  await publish(a, dtmf({ by: monitor, callId: myCall, at: new Date().toISOString() }));
  await countsGrown(before, { refused: 1, recorded: 5 });
  const listed = await eventsOf(DOOR);
  const find = (by: string | null, callId: string | null) => listed.find((e: { byStation: string | null; callId: string | null }) => e.byStation === by && e.callId === callId);
  t.match(find(bobApp, 'invented@10.9.9.9'), { verified: { relay: true, call: false, by: false } }, "another installer's app station and an invented Call-ID: stored, unverified");
  t.match(find(monitor, theirCall), { verified: { relay: true, call: false, by: false } }, "another door's call is not this door's");
  t.match(find(door, myCall), { verified: { call: true, by: false } }, 'its own call, but not the other party');
  t.match(find(null, null), { method: 'dtmf', verified: { call: false, by: false } }, 'dtmf without callId and by: required, so unverified');
  t.match(find(monitor, myCall), { verified: { relay: true, call: true, by: true, at: true } }, 'the real call and its answering station: verified');
  a.end();
});

t.test("a device's time is clamped to the receipt: a date in 2099 is not first in the list", async (t) => {
  const a = await connected(DOOR);
  const clock = svc.service.calls.doorEvents;
  const received = new Date('2030-06-01T12:00:00.000Z');
  clock.now = () => received;
  t.teardown(() => (clock.now = () => new Date()));
  const before = await eventCounts();
  await publish(a, { type: 'door-opened', eventId: 'future', relay: 1, method: 'button', at: '2099-01-01T00:00:00Z' });
  await publish(a, { type: 'door-opened', eventId: 'past', relay: 1, method: 'button', at: '2030-06-01T11:00:00Z' });
  await publish(a, { type: 'door-opened', eventId: 'skewed', relay: 1, method: 'button', at: '2030-06-01T12:01:00Z' });
  await countsGrown(before, { recorded: 3 });
  clock.now = () => new Date('2030-06-01T12:00:01.000Z');
  await publish(a, { type: 'door-opened', eventId: 'later', relay: 1, method: 'card' });
  await countsGrown(before, { recorded: 4 });
  const listed = (await doorEvents()).body.items;
  t.match(listed[0], { method: 'card', occurredAt: '2030-06-01T12:00:01.000Z' }, 'the event received last is first');
  const byReported = (at: string) => listed.find((e: { reportedAt: string | null }) => e.reportedAt === at);
  t.match(byReported('2099-01-01T00:00:00.000Z'), { occurredAt: received.toISOString(), receivedAt: received.toISOString(), verified: { at: false } }, 'a future time becomes the receipt, kept as reported');
  t.match(byReported('2030-06-01T11:00:00.000Z'), { occurredAt: '2030-06-01T11:55:00.000Z', verified: { at: false } }, 'an hour late: clamped to 5 min before the receipt');
  t.match(byReported('2030-06-01T12:01:00.000Z'), { occurredAt: received.toISOString(), verified: { at: true } }, 'a clock a minute ahead is within tolerance, never after the receipt');
  a.end();
});

t.test('events beyond the per-device rate are dropped and counted; the session stays', async (t) => {
  const flood = await connected(FLOOD);
  const limiter = svc.service.gateway.eventLimiter;
  let now = Date.parse('2030-01-01T00:00:00Z');
  limiter.now = () => now;
  t.teardown(() => (limiter.now = () => Date.now()));
  const before = await eventCounts();
  for (let i = 0; i < LIMIT + 5; i++) await publish(flood, { type: 'door-opened', eventId: `flood-${i}`, relay: 1, method: 'button' }, FLOOD);
  await countsGrown(before, { recorded: LIMIT, rate_limited: 5 });
  t.equal((await eventsOf(FLOOD)).length, LIMIT, `${LIMIT} a minute are recorded, the rest dropped`);
  t.notOk(flood.closed, 'the session stays');
  const quiet = await connected(DOOR);
  await publish(quiet, { type: 'door-opened', eventId: 'neighbour', relay: 1, method: 'pin' });
  await countsGrown(before, { recorded: LIMIT + 1, rate_limited: 5 });
  t.pass("another device's events are not limited by the flood");
  now += 3_000; // a twentieth of a minute: one token back
  await publish(flood, { type: 'door-opened', eventId: 'flood-after', relay: 1, method: 'button' }, FLOOD);
  await countsGrown(before, { recorded: LIMIT + 2, rate_limited: 5 });
  t.pass('the bucket refills over the minute');
  flood.end();
  quiet.end();
});
