import t from 'tap';
import type { RemoteOpening } from '../../simulators/device-simulator.js';
import { once, startTestService, waitFor } from '../helpers/service.js';

// Issue 19, "Open a door": an installer, a sub-installer, a property manager of the site and an app of an
// apartment the door serves open a relay whose access methods include "homepage"; everybody else is
// refused; every attempt of a caller who may see the device is in the door log.

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string | undefined) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: token ?? null, ...(body === undefined ? {} : { body }) });
const api = as(alice.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Doors', timeZone: 'Europe/Berlin' }), 201);
const other = await ok(api('POST', '/sites', { kind: 'community', name: 'Elsewhere', timeZone: 'Europe/Berlin' }), 201);
const building = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'A' }), 201);
const flat = await ok(api('POST', `/buildings/${building.id}/apartments`, { number: '101' }), 201);
const farBuilding = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'B' }), 201);
const farFlat = await ok(api('POST', `/buildings/${farBuilding.id}/apartments`, { number: '201' }), 201);
await ok(api('PUT', `/sites/${site.id}/app-licences`, { units: 2 }));

// The door phone of building A: relay 1 opens from the home screen, relay 2 only from a call.
const DOOR = '0C1119000001';
await svc.addDevice(alice.token, DOOR, {
  name: 'Entrance A',
  relays: [
    { name: 'Gate', dtmf: '#', enabled: true, accessMethods: ['homepage', 'talking-page'] },
    { name: 'Garage', dtmf: '2', enabled: true, accessMethods: ['talking-page'] },
  ],
});
await ok(api('PATCH', `/devices/${DOOR}`, { siteId: site.id, buildingId: building.id }));
const door = svc.device(DOOR, { reconnect: { minMs: 50, maxMs: 200 } });
door.start();
await waitFor(() => svc.service.gateway!.connectedSince(DOOR), (since) => since !== null);
await waitFor(() => door.config.get('Config.DoorSetting.RELAY.Enable1'), (v) => v === '1');

const open = (token: string | undefined, relay = 1, mac = DOOR) => as(token)('POST', `/devices/${mac}/relays/${relay}/open`);
const openAsApp = (user: string, password: string, relay = 1) =>
  svc.api('POST', `/api/v1/devices/${DOOR}/relays/${relay}/open`, { token: null, headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } });
const log = async () => (await ok(api('GET', `/sites/${site.id}/door-events?pageSize=100`))).items as any[];
const app = async (apartmentId: string) => {
  const code = await ok(api('POST', `/apartments/${apartmentId}/app-registrations`), 201);
  const res = await fetch(code.registrationUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  return ((await res.json()) as any).sip as { username: string; password: string };
};

t.test('the installer opens relay 1: the device opens it at once and the door log has it', async (t) => {
  const opened = once<RemoteOpening>(door, 'remote-open-published');
  const res = await open(alice.token);
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.match(res.body, { outcome: 'opened', job: { state: 'succeeded' } });
  const opening = await opened;
  t.match(opening, { relay: 1, name: 'Gate', jobId: res.body.job.id, by: null }, 'the relay opened for that job');
  const [row] = await waitFor(log, (items) => items[0]?.id === res.body.doorEventId && items[0]?.verified.relay === true);
  t.match(row, { mac: DOOR, relay: 1, method: 'remote', outcome: 'opened', jobId: res.body.job.id, requestedBy: { kind: 'installer', id: alice.id } }, 'one row: the attempt, confirmed by the device');
  t.equal((await log()).length, 1);
  const job = await ok(api('GET', `/jobs/${res.body.job.id}`));
  t.match(job, { kind: 'open-door', params: { relay: 1, requestedBy: { kind: 'installer', name: 'Alice' } } });
  t.ok(new Date(job.expiresAt).getTime() - new Date(job.createdAt).getTime() <= 10_000, 'it expires within 10 s');
});

t.test('refused: a relay without "homepage", a relay the device lacks, a distributor; another installer sees no device', async (t) => {
  const before = (await log()).length;
  const garage = await open(alice.token, 2);
  t.equal(garage.status, 403);
  t.equal(garage.body.error.code, 'relay_not_remote');
  const missing = await open(alice.token, 5);
  t.equal(missing.status, 404);
  t.equal(missing.body.error.code, 'relay_not_found');
  const distributor = await open(undefined);
  t.equal(distributor.status, 401, 'anonymous');
  const byDistributor = await svc.api('POST', `/api/v1/devices/${DOOR}/relays/1/open`);
  t.equal(byDistributor.status, 403, 'a distributor does not open doors');
  const byBob = await open(bob.token);
  t.equal(byBob.status, 404, "Bob cannot see Alice's door phone");
  const items = await log();
  t.equal(items.length, before + 3, "the installer's and the distributor's refused attempts are logged; Bob's and the anonymous one are not");
  t.same(items.slice(0, 3).map((e) => [e.outcome, e.reason, e.relay]).sort(), [['refused', 'forbidden', 1], ['refused', 'relay_not_found', 5], ['refused', 'relay_not_remote', 2]].sort());
  t.equal(door.remoteOpenings.length, 1, 'the device opened nothing more');
});

t.test('a sub-installer and a property manager of the site open it; a property manager of another site cannot', async (t) => {
  const sub = await ok(api('POST', '/sub-installers', { name: 'Sam', email: 'sam@doors.test' }), 201);
  const bySub = await open(sub.token.token);
  t.equal(bySub.status, 200, JSON.stringify(bySub.body));
  const pm = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@doors.test', siteIds: [site.id] }), 201);
  const byPm = await open(pm.token.token);
  t.equal(byPm.status, 200, JSON.stringify(byPm.body));
  const otherPm = await ok(api('POST', '/property-managers', { name: 'Oscar', email: 'oscar@doors.test', siteIds: [other.id] }), 201);
  t.equal((await open(otherPm.token.token)).status, 404, "a property manager of another site does not see the door");
  const rows = await waitFor(log, (items) => items.filter((e) => e.outcome === 'opened').length === 3);
  t.same(rows.filter((e) => e.outcome === 'opened').map((e) => e.requestedBy.kind).sort(), ['installer', 'property-manager', 'sub-installer']);
});

t.test("an app opens the doors of its address book with its SIP credentials; another apartment's app cannot", async (t) => {
  const mine = await app(flat.id);
  const res = await openAsApp(mine.username, mine.password);
  t.equal(res.status, 200, JSON.stringify(res.body));
  const opening = door.remoteOpenings.at(-1)!;
  t.equal(opening.by, mine.username, 'the device is told which app asked');
  const row = (await waitFor(log, (items) => items.find((e) => e.id === res.body.doorEventId)?.byStation === mine.username)).find((e) => e.id === res.body.doorEventId);
  t.match(row, { requestedBy: { kind: 'app', id: mine.username }, apartmentId: flat.id, verified: { by: true } });
  t.equal((await openAsApp(mine.username, 'wrong')).status, 401, 'a wrong password');
  t.equal((await openAsApp(mine.username, mine.password, 2)).status, 403, 'not a relay for the home screen');
  const far = await app(farFlat.id);
  const refused = await openAsApp(far.username, far.password);
  t.equal(refused.status, 403, "the door of building A is not in building B's app's address book");
  t.equal(refused.body.error.code, 'not_in_address_book');
  t.match((await log())[0], { outcome: 'refused', reason: 'not_in_address_book', requestedBy: { kind: 'app', id: far.username }, apartmentId: farFlat.id });
});

t.test('an offline device is refused at once (409) and the attempt logged', async (t) => {
  const OFF = '0C1119000002';
  await svc.addDevice(alice.token, OFF, { relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
  await ok(api('PATCH', `/devices/${OFF}`, { siteId: site.id, buildingId: building.id }));
  const res = await open(alice.token, 1, OFF);
  t.equal(res.status, 409);
  t.equal(res.body.error.code, 'device_offline');
  t.match((await log())[0], { mac: OFF, outcome: 'refused', reason: 'device_offline' });
  const [jobs] = await svc.sql<{ n: number }>("SELECT count(*)::int AS n FROM jobs WHERE mac = $1 AND kind = 'open-door'", [OFF]);
  t.equal(jobs!.n, 0, 'no job was made');
});

t.test('a device that opens without answering in time: 202 with the job; the door log follows the device', async (t) => {
  const SLOW = '0C1119000003';
  await svc.addDevice(alice.token, SLOW, { relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
  await ok(api('PATCH', `/devices/${SLOW}`, { siteId: site.id, buildingId: building.id }));
  const slow = svc.device(SLOW, { behaviour: { dropAcks: 10 } });
  slow.start();
  await waitFor(() => svc.service.gateway!.connectedSince(SLOW), (since) => since !== null);
  await waitFor(() => slow.config.get('Config.DoorSetting.RELAY.Enable1'), (v) => v === '1');
  const opened = once<RemoteOpening>(slow, 'remote-open-published');
  const res = await open(alice.token, 1, SLOW);
  t.equal(res.status, 202, 'no answer within the wait');
  t.match(res.body, { outcome: 'pending', job: { id: /.+/ } });
  t.equal((await opened).jobId, res.body.job.id);
  const row = await waitFor(log, (items) => items.find((e) => e.id === res.body.doorEventId)?.outcome === 'opened');
  t.ok(row, "the device's door-opened event confirmed the attempt");
  await slow.stop();
});

t.test('a device that cannot open says so: 200 failed, and the door log shows the failure (its job events)', async (t) => {
  const JAM = '0C1119000004';
  await svc.addDevice(alice.token, JAM, { relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
  await ok(api('PATCH', `/devices/${JAM}`, { siteId: site.id, buildingId: building.id }));
  const jam = svc.device(JAM, { behaviour: { failKinds: ['open-door'] } });
  jam.start();
  await waitFor(() => svc.service.gateway!.connectedSince(JAM), (since) => since !== null);
  const res = await open(alice.token, 1, JAM);
  t.equal(res.status, 200);
  t.match(res.body, { outcome: 'failed', job: { state: 'failed', error: { code: 'simulated_failure' } } });
  const rows = await waitFor(log, (items) => items.find((e) => e.id === res.body.doorEventId)?.outcome !== 'pending');
  t.match(rows.find((e) => e.id === res.body.doorEventId), { outcome: 'failed', reason: 'simulated_failure' });
  t.equal(jam.remoteOpenings.length, 0, 'nothing opened');
  await jam.stop();
});
