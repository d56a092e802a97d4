import t from 'tap';
import type { RemoteOpening } from '../../simulators/device-simulator.js';
import { once, startTestService, waitFor } from '../helpers/service.js';

// Issue 19, "Door log": the site's, a device's and an apartment's door log, filtered by device, apartment,
// relay, method, outcome and time, with names; calls answered without the door opened when the site logs
// them; the same filters and names for calls. Kamailio's reports are made as its back end receives them.

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const apiAs = (token: string) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, ...(body === undefined ? {} : { body }) });
const api = apiAs(alice.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Log', timeZone: 'Europe/Berlin', logUnopenedCalls: true }), 201);
const other = await ok(api('POST', '/sites', { kind: 'community', name: 'Other', timeZone: 'Europe/Berlin' }), 201);
const building = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'A' }), 201);
const flat = await ok(api('POST', `/buildings/${building.id}/apartments`, { number: '101', name: 'Blues' }), 201);
const DOOR = '0C1119100001';
const MONITOR = '0C1119100002';
const doorRecord = await svc.addDevice(alice.token, DOOR, {
  name: 'Entrance A',
  relays: [
    { name: 'Gate', dtmf: '#', enabled: true, accessMethods: ['homepage'] },
    { name: 'Garage', dtmf: '2', enabled: true, accessMethods: ['talking-page'] },
  ],
});
const monitorRecord = await svc.addDevice(alice.token, MONITOR, { name: 'Monitor 101', type: 2 });
await ok(api('PATCH', `/devices/${DOOR}`, { siteId: site.id, buildingId: building.id }));
await ok(api('PATCH', `/devices/${MONITOR}`, { siteId: site.id, apartmentId: flat.id }));
const DOOR_SIP: string = doorRecord.sip.number;
const MONITOR_SIP: string = monitorRecord.sip.number;
const door = svc.device(DOOR, { reconnect: { minMs: 50, maxMs: 200 } });
door.start();
await waitFor(() => svc.service.gateway!.connectedSince(DOOR), (since) => since !== null);
await waitFor(() => door.config.get('Config.DoorSetting.RELAY.Enable1'), (v) => v === '1');

const calls = svc.service.calls;
/** A call from the door phone to 101 that the monitor answers, as Kamailio reports it. */
const answeredCall = async (callId: string) => {
  await calls.route(DOOR_SIP, '101', callId);
  await calls.callEvent({ event: 'answered', callId, by: MONITOR_SIP });
};
const report = async (event: Record<string, unknown>) => {
  await door.publish('events', JSON.stringify({ type: 'door-opened', at: new Date().toISOString(), ...event }));
};
const doorLog = async (query = '', path = `/sites/${site.id}/door-events`) => (await ok(api('GET', `${path}?pageSize=100${query}`))).items as any[];

const started = new Date();
t.test('the door log gathers what happened, with names', async (t) => {
  const opened = once<RemoteOpening>(door, 'remote-open-published');
  t.equal((await api('POST', `/devices/${DOOR}/relays/1/open`)).status, 200);
  await opened;
  t.equal((await api('POST', `/devices/${DOOR}/relays/2/open`)).status, 403);
  await report({ eventId: 'pin-1', relay: 1, method: 'pin' });
  // A call answered and ended without the door opened; another in which the monitor opened it.
  await answeredCall('call-1@test');
  await calls.callEvent({ event: 'ended', callId: 'call-1@test' });
  await answeredCall('call-2@test');
  await report({ eventId: 'dtmf-2', relay: 1, method: 'dtmf', by: MONITOR_SIP, callId: 'call-2@test' });
  await waitFor(() => doorLog(), (items) => items.some((e) => e.callId === 'call-2@test'));
  await calls.callEvent({ event: 'ended', callId: 'call-2@test' });

  const items = await waitFor(() => doorLog(), (items) => items.length === 5 && items.every((e) => e.outcome !== 'pending'));
  t.same(items.map((e) => `${e.method}:${e.outcome}`).sort(), ['call:not-opened', 'dtmf:opened', 'pin:opened', 'remote:opened', 'remote:refused']);
  const dtmf = items.find((e) => e.method === 'dtmf');
  t.match(dtmf, { deviceName: 'Entrance A', relayName: 'Gate', apartment: { id: flat.id, number: '101', name: 'Blues', building: 'A' }, verified: { call: true, by: true } }, "the monitor's opening is of its apartment, with names");
  t.match(items.find((e) => e.method === 'call'), { outcome: 'not-opened', callId: 'call-1@test', byStation: MONITOR_SIP, apartment: { number: '101' }, relay: 0, relayName: null });
});

t.test('filters: device, apartment, relay, method, outcome, time', async (t) => {
  t.same((await doorLog('&method=remote')).map((e) => e.outcome).sort(), ['opened', 'refused']);
  t.same((await doorLog('&outcome=refused')).map((e) => e.relay), [2]);
  t.equal((await doorLog('&relay=1')).length, 3, 'remote, pin and dtmf opened relay 1');
  t.same((await doorLog(`&apartmentId=${flat.id}`)).map((e) => e.method).sort(), ['call', 'dtmf']);
  t.equal((await doorLog(`&mac=${DOOR}`)).length, 5);
  t.equal((await doorLog(`&mac=${MONITOR}`)).length, 0);
  t.equal((await doorLog(`&from=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`)).length, 0, 'nothing in the future');
  t.equal((await doorLog(`&from=${encodeURIComponent(started.toISOString())}&to=${encodeURIComponent(new Date(Date.now() + 3600_000).toISOString())}`)).length, 5);
  t.equal((await api('GET', `/sites/${site.id}/door-events?outcome=maybe`)).status, 400, 'an unknown outcome is a validation error');
  t.equal((await doorLog('', `/devices/${DOOR}/door-events`)).length, 5, "the device's own list");
  t.same((await doorLog('&outcome=opened', `/apartments/${flat.id}/door-events`)).map((e) => e.method), ['dtmf'], "the apartment's own list, filtered");
});

t.test('a door opened late in a call replaces its "not opened" row', async (t) => {
  await answeredCall('call-3@test');
  await calls.callEvent({ event: 'ended', callId: 'call-3@test' });
  t.equal((await doorLog('&outcome=not-opened')).length, 2);
  await report({ eventId: 'dtmf-3', relay: 1, method: 'dtmf', by: MONITOR_SIP, callId: 'call-3@test' });
  const rows = await waitFor(() => doorLog(), (items) => items.some((e) => e.callId === 'call-3@test' && e.outcome === 'opened'));
  t.same(rows.filter((e) => e.callId === 'call-3@test').map((e) => e.outcome), ['opened'], 'only the opening is left');
});

t.test('a site that does not log unopened calls records none', async (t) => {
  await ok(api('PATCH', `/sites/${site.id}`, { logUnopenedCalls: false }));
  await answeredCall('call-4@test');
  await calls.callEvent({ event: 'ended', callId: 'call-4@test' });
  t.notOk((await doorLog()).some((e) => e.callId === 'call-4@test'));
  t.equal((await ok(api('GET', `/sites/${site.id}`))).logUnopenedCalls, false);
});

t.test('calls: the same filters and names', async (t) => {
  const list = async (query = '') => (await ok(api('GET', `/sites/${site.id}/calls?pageSize=100${query}`))).items as any[];
  t.equal((await list()).length, 4);
  t.match((await list())[0], { caller: DOOR_SIP, callerName: 'Entrance A', answeredBy: MONITOR_SIP, answeredByName: 'Monitor 101', apartment: { number: '101', building: 'A' } });
  t.equal((await list(`&station=${MONITOR_SIP}`)).length, 4);
  t.equal((await list('&outcome=completed')).length, 4, 'all four were answered and ended');
  t.equal((await list('&outcome=no-answer')).length, 0);
  t.equal((await list(`&apartmentId=${flat.id}&from=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).length, 0);
});

t.test('who reads the door log: the installer and property managers of the site; nobody else', async (t) => {
  const paths = [`/sites/${site.id}/door-events`, `/devices/${DOOR}/door-events`, `/apartments/${flat.id}/door-events`];
  const pm = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@log.test', siteIds: [site.id] }), 201);
  const otherPm = await ok(api('POST', '/property-managers', { name: 'Oscar', email: 'oscar@log.test', siteIds: [other.id] }), 201);
  for (const path of paths) {
    t.equal((await apiAs(pm.token.token)('GET', path)).status, 200, `the site's property manager: ${path}`);
    t.equal((await apiAs(otherPm.token.token)('GET', path)).status, 404, `another site's property manager: ${path}`);
    t.equal((await apiAs(bob.token)('GET', path)).status, 404, `another installer: ${path}`);
    t.equal((await svc.api('GET', `/api/v1${path}`, { token: null })).status, 401, `anonymous: ${path}`);
    t.equal((await svc.api('GET', `/api/v1${path}`, { token: null, headers: { authorization: `Basic ${Buffer.from(`${MONITOR_SIP}:x`).toString('base64')}` } })).status, 401, `Basic credentials: ${path}`);
  }
});

t.test("a MAC bound again by another installer shows none of the earlier owner's door log", async (t) => {
  await door.stop();
  t.equal((await api('DELETE', `/devices/${DOOR}`)).status, 204);
  t.equal((await api('DELETE', `/mac-library/${DOOR}`)).status, 204);
  const bobApi = apiAs(bob.token);
  await svc.addDevice(bob.token, DOOR, { name: "Bob's door" });
  const bobs = await bobApi('GET', `/devices/${DOOR}/door-events`);
  t.equal(bobs.status, 200);
  t.same(bobs.body.items, [], "Alice's rows stay hers");
  t.ok((await doorLog()).length >= 5, "and stay in Alice's site's log");
});
