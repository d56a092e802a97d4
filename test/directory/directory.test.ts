import t from 'tap';
import { apiAs, once, startTestService, waitFor } from '../helpers/service.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string) => apiAs(svc.api, token);
const A = as(alice.token);
const B = as(bob.token);
const jobsOf = async (mac: string, kind = 'provision') => (await A.get(`/jobs?mac=${mac}&kind=${kind}&pageSize=100`)).body.items as any[];
const count = async (table: string) => (await svc.sql(`select count(*)::int as n from ${table}`))[0].n as number;

async function site(body: Record<string, unknown> = {}) {
  const res = await A.post('/sites', { kind: 'community', name: `Site ${Math.random()}`, timeZone: 'Europe/Berlin', ...body });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
async function building(siteId: string, name = 'A') {
  const res = await A.post(`/sites/${siteId}/buildings`, { name });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
async function apartment(buildingId: string, number: string, body: Record<string, unknown> = {}) {
  const res = await A.post(`/buildings/${buildingId}/apartments`, { number, ...body });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
async function resident(apartmentId: string, firstName: string, lastName: string, body: Record<string, unknown> = {}) {
  const res = await A.post(`/apartments/${apartmentId}/residents`, { firstName, lastName, ...body });
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
}
async function pin(residentId: string, value: string, body: Record<string, unknown> = {}) {
  return A.post(`/residents/${residentId}/credentials`, { kind: 'pin', value, ...body });
}

t.test('sites: validated, owned by one installer, seen by a distributor', async (t) => {
  const bad = await A.post('/sites', { kind: 'community', name: 'X', timeZone: 'Mars/Olympus' });
  t.equal(bad.status, 400);
  t.equal(bad.body.error.code, 'validation_error');
  t.equal((await A.post('/sites', { kind: 'community', name: 'X\u0000', timeZone: 'UTC' })).status, 400, 'NUL in a name is refused');
  t.equal((await A.post('/sites', { kind: 'villa', name: 'X', timeZone: 'UTC' })).status, 400);

  const s = await site({ name: 'Seaside', address: 'Harbour 1', pinMode: 'apt-pin' });
  t.match(s, { kind: 'community', name: 'Seaside', timeZone: 'Europe/Berlin', contactDisplay: 'first-last', pinMode: 'apt-pin', communityCalls: false, installerId: alice.id });
  t.equal((await B.get(`/sites/${s.id}`)).status, 404, "another installer does not see Alice's site");
  t.equal((await B.patch(`/sites/${s.id}`, { name: 'Mine' })).status, 404);
  t.equal((await B.post(`/sites/${s.id}/buildings`, { name: 'B' })).status, 404, 'nor builds in it');
  t.notOk((await B.get('/sites?pageSize=500')).body.items.some((x: any) => x.id === s.id));
  const asDistributor = await svc.api('GET', `/api/v1/sites/${s.id}`);
  t.equal(asDistributor.status, 200, 'a distributor sees every site');
  const noOwner = await svc.api('POST', '/api/v1/sites', { body: { kind: 'office', name: 'HQ', timeZone: 'UTC' } });
  t.equal(noOwner.status, 400);
  t.equal(noOwner.body.error.code, 'installer_required');
  const forBob = await svc.api('POST', '/api/v1/sites', { body: { kind: 'office', name: 'HQ', timeZone: 'UTC', installerId: bob.id } });
  t.equal(forBob.status, 201);
  t.equal(forBob.body.installerId, bob.id);
  t.equal((await A.post('/sites', { kind: 'office', name: 'HQ', timeZone: 'UTC', installerId: bob.id })).body.error.code, 'installer_not_allowed');

  const patched = await A.patch(`/sites/${s.id}`, { timeZone: 'America/New_York', contactDisplay: 'last-first' });
  t.equal(patched.status, 200);
  t.match(patched.body, { timeZone: 'America/New_York', contactDisplay: 'last-first' });
});

t.test('buildings and apartments: names and numbers as the portal allows them', async (t) => {
  const s = await site();
  const b = await building(s.id, 'Tower A');
  t.equal((await A.post(`/sites/${s.id}/buildings`, { name: 'Tower A' })).body.error.code, 'building_name_taken');
  t.equal((await A.post(`/sites/${s.id}/buildings`, { name: 'Tower B', groundFloor: 'G3' })).status, 400);

  for (const number of ['#101', '1234567', '12a', '', '1#2#3#4#5#6#7']) {
    const res = await A.post(`/buildings/${b.id}/apartments`, { number });
    t.equal(res.status, 400, `apartment number ${JSON.stringify(number)} is refused`);
  }
  for (const floor of ['129', '-11', 'G3', '1.5']) t.equal((await A.post(`/buildings/${b.id}/apartments`, { number: '1', floor })).status, 400, `floor ${floor} is refused`);
  const a = await apartment(b.id, '2#123', { name: 'The Green', floor: 'G1', contactPreference: { mode: 'sequence', steps: ['indoor-monitors', 'landlines'] } });
  t.match(a, { number: '2#123', floor: 'G1', contactPreference: { mode: 'sequence', steps: ['indoor-monitors', 'landlines'] }, siteId: s.id, buildingId: b.id });
  t.equal((await A.post(`/buildings/${b.id}/apartments`, { number: '2#123' })).body.error.code, 'apartment_number_taken');
  t.equal((await A.post(`/buildings/${b.id}/apartments`, { number: '9', contactPreference: { mode: 'sequence', steps: ['landlines', 'landlines'] } })).status, 400);
  t.equal((await A.post(`/buildings/${b.id}/apartments`, { number: '9', contactPreference: { mode: 'sequence', steps: [] } })).status, 400);
  const other = await building(s.id, 'Tower B');
  t.equal((await A.post(`/buildings/${other.id}/apartments`, { number: '2#123' })).status, 201, 'the same number in another building');
  t.equal((await A.get(`/buildings/${b.id}/apartments`)).body.total, 1);
});

t.test('residents: a main resident, then family members; names bounded in bytes', async (t) => {
  const s = await site();
  const a = await apartment((await building(s.id)).id, '101');
  const early = await A.post(`/apartments/${a.id}/residents`, { firstName: 'Kid', lastName: 'Green', role: 'family' });
  t.equal(early.body.error.code, 'main_resident_missing');
  t.equal((await A.post(`/apartments/${a.id}/residents`, { firstName: 'é'.repeat(33), lastName: 'Green' })).status, 400, '66 bytes is over 64');
  t.equal((await A.post(`/apartments/${a.id}/residents`, { firstName: 'Lily', lastName: 'Green', mobile: { countryCode: '49', number: '12' } })).status, 400);
  const lily = await resident(a.id, 'Lily', 'Green', { email: 'lily@example.test', mobile: { countryCode: '49', number: '1701234567' }, landlines: ['0301234567'], accessibleFloors: ['5', 'G0'] });
  t.match(lily, { role: 'main', mobile: { countryCode: '+49', number: '1701234567' }, accessibleFloors: ['5', 'G0'] });
  const kid = await resident(a.id, 'Tom', 'Green');
  t.equal(kid.role, 'family', 'the next resident is a family member');
  t.equal((await A.post(`/apartments/${a.id}/residents`, { firstName: 'X', lastName: 'Y', role: 'main' })).body.error.code, 'main_resident_exists');
  t.equal((await A.del(`/residents/${lily.id}`)).body.error.code, 'family_members_remain');
  t.same((await A.get(`/apartments/${a.id}/residents`)).body.items.map((r: any) => r.firstName), ['Lily', 'Tom']);
  t.equal((await B.get(`/residents/${lily.id}`)).status, 404);
});

t.test('PIN codes and cards: unique where the PIN mode says, and nothing half-written', async (t) => {
  const s = await site({ pinMode: 'apt-pin' });
  const b = await building(s.id);
  const r1 = await resident((await apartment(b.id, '101')).id, 'Ann', 'One');
  const r2 = await resident((await apartment(b.id, '102')).id, 'Ben', 'Two');
  t.equal((await pin(r1.id, '123')).status, 400, 'a PIN has 4 to 8 digits');
  t.equal((await pin(r1.id, '12345678x')).status, 400);
  t.equal((await pin(r1.id, '1234', { validFrom: '2026-12-01T00:00:00Z', validUntil: '2026-11-01T00:00:00Z' })).status, 400, 'a window must not end before it starts');
  t.equal((await pin(r1.id, '1234')).status, 201);
  t.equal((await pin(r1.id, '1234')).body.error.code, 'pin_taken', 'unique in the apartment');
  t.equal((await pin(r2.id, '1234')).status, 201, 'in apt-pin mode another apartment may use the same PIN');

  const toPin = await A.patch(`/sites/${s.id}`, { pinMode: 'pin', name: 'Renamed' });
  t.equal(toPin.status, 409);
  t.equal(toPin.body.error.code, 'pin_taken');
  const after = (await A.get(`/sites/${s.id}`)).body;
  t.match(after, { pinMode: 'apt-pin', name: s.name }, 'the refused change left nothing behind');

  const card = await A.post(`/residents/${r1.id}/credentials`, { kind: 'card', value: 'a1b2c3d4' });
  t.equal(card.status, 201);
  t.equal(card.body.value, 'A1B2C3D4');
  t.equal((await A.post(`/residents/${r2.id}/credentials`, { kind: 'card', value: 'A1B2C3D4' })).body.error.code, 'card_taken', 'a card is unique in the site');
  t.equal((await B.post(`/residents/${r1.id}/credentials`, { kind: 'pin', value: '5555' })).status, 404);
  t.equal((await B.del(`/credentials/${card.body.id}`)).status, 404, 'another installer cannot revoke it');
  t.equal((await A.get(`/residents/${r1.id}/credentials`)).body.items.length, 2);
});

t.test('placement: a device goes in a site, a building or an apartment of its own installer', async (t) => {
  const s = await site();
  const b = await building(s.id);
  const a = await apartment(b.id, '101');
  await svc.addDevice(alice.token, '0C1107000001', { type: 0 });
  await svc.addDevice(alice.token, '0C1107000002', { type: 2 });
  await svc.addDevice(bob.token, '0C1107000003', { type: 0 });

  const wrongType = await A.patch('/devices/0C1107000001', { siteId: s.id, apartmentId: a.id });
  t.equal(wrongType.status, 400);
  t.equal(wrongType.body.error.code, 'placement_invalid', 'a multi-tenant door phone is not placed in an apartment');
  t.equal((await A.patch('/devices/0C1107000001', { buildingId: b.id })).status, 400, 'siteId comes with a building');
  t.equal((await B.patch('/devices/0C1107000003', { siteId: s.id })).status, 404, "Bob cannot place his device in Alice's site");

  const placed = await A.patch('/devices/0C1107000001', { siteId: s.id, buildingId: b.id, name: 'Tower gate' });
  t.equal(placed.status, 200);
  t.match(placed.body, { siteId: s.id, buildingId: b.id, apartmentId: null, name: 'Tower gate' });
  const monitor = await A.patch('/devices/0C1107000002', { siteId: s.id, apartmentId: a.id });
  t.match(monitor.body, { siteId: s.id, buildingId: b.id, apartmentId: a.id }, 'the building follows from the apartment');
  t.equal((await A.patch('/devices/0C1107000002', { type: 0 })).body.error.code, 'placement_invalid', 'nor may a device in an apartment become a door phone');
  t.equal((await A.get('/devices/0C1107000002')).body.type, 2, 'and the refused change left nothing');

  t.same((await A.get(`/devices?siteId=${s.id}`)).body.items.map((d: any) => d.mac).sort(), ['0C1107000001', '0C1107000002']);
  t.same((await A.get(`/devices?apartmentId=${a.id}`)).body.items.map((d: any) => d.mac), ['0C1107000002']);
  t.equal((await A.del(`/sites/${s.id}`)).body.error.code, 'site_has_devices');
  t.equal((await A.del(`/apartments/${a.id}`)).body.error.code, 'apartment_has_devices');
  t.match((await A.patch('/devices/0C1107000002', { siteId: null })).body, { siteId: null, buildingId: null, apartmentId: null });
  await A.patch('/devices/0C1107000001', { siteId: null });
  t.equal((await A.del(`/sites/${s.id}`)).status, 204, 'an empty site can go');
  t.equal(await count(`apartments where site_id = '${s.id}'`), 0, 'with its buildings and apartments');
});

t.test('the directory provisions devices by itself: contacts, PINs, revocation, reset', async (t) => {
  const s = await site({ name: 'Seaside', timeZone: 'Asia/Shanghai' });
  const b = await building(s.id, 'Tower A');
  const a101 = await apartment(b.id, '101', { name: 'The Green' });
  const a102 = await apartment(b.id, '102');
  const gate = '0C1108000001';
  const monitor = '0C1108000002';
  await svc.addDevice(alice.token, gate, { type: 0, name: 'Main gate' });
  await svc.addDevice(alice.token, monitor, { type: 2, name: 'Kitchen' });
  await A.patch(`/devices/${gate}`, { siteId: s.id });
  await A.patch(`/devices/${monitor}`, { siteId: s.id, apartmentId: a101.id });
  const gateSim = svc.device(gate, { reconnect: { minMs: 50, maxMs: 200 } });
  const monitorSim = svc.device(monitor, { reconnect: { minMs: 50, maxMs: 200 } });
  gateSim.start();
  monitorSim.start();
  await Promise.all([once(gateSim, 'online'), once(monitorSim, 'online')]);
  const succeededProvisions = async (mac: string) => (await jobsOf(mac)).filter((j) => j.state === 'succeeded').length;
  await waitFor(() => succeededProvisions(gate), (n) => n >= 1);
  await waitFor(() => succeededProvisions(monitor), (n) => n >= 1);
  await svc.service.follower.settled();
  await waitFor(() => jobsOf(gate), (js) => js.every((j) => j.state === 'succeeded'));

  t.equal(gateSim.config.get('Config.Settings.DATETIME.TimeZone'), 'Asia/Shanghai', "the site's time zone reaches the device");
  const gateContacts = () => gateSim.directory.get('contacts')?.content as any;
  const monitorContacts = () => monitorSim.directory.get('contacts')?.content as any;
  await waitFor(() => monitorContacts(), (c) => c?.entrances?.length === 1);
  t.same(monitorContacts().entrances, [{ name: 'Main gate', location: null, sipNumber: (await A.get(`/devices/${gate}`)).body.sipNumber, type: 'door-phone' }], 'the monitor knows its door phone');
  await waitFor(() => gateContacts(), (c) => c?.apartments?.length === 2);
  const kitchenSip = (await A.get(`/devices/${monitor}`)).body.sipNumber;
  t.match(gateContacts().apartments[0], { apartment: '101', building: 'Tower A', name: 'The Green', residents: [], call: { mode: 'group', steps: [{ step: 'group', targets: [{ type: 'indoor-monitor', sipNumber: kitchenSip }] }] } });
  t.notOk(monitorSim.directory.has('credentials'), 'an indoor monitor opens no doors: no credential list');

  // A resident with a PIN: the door phone is provisioned, the monitor is not (its documents did not change).
  const monitorJobs = (await jobsOf(monitor)).length;
  const gateJobs = (await jobsOf(gate)).length;
  const lily = await resident(a101.id, 'Lily', 'Green');
  const code = await pin(lily.id, '4321');
  t.equal(code.status, 201);
  await waitFor(() => gateSim.acceptsPin('4321'), (ok) => ok);
  t.same(gateContacts().apartments[0].residents, ['Lily Green']);
  await svc.service.follower.settled();
  t.equal((await jobsOf(monitor)).length, monitorJobs, 'no job for a device whose documents did not change');
  t.ok((await jobsOf(gate)).length > gateJobs, 'the door phone got provisioning jobs');
  const view = await A.get(`/devices/${gate}/directory`);
  t.equal(view.status, 200);
  t.match(view.body, { mac: gate, siteId: s.id, timeZone: 'Asia/Shanghai' });
  t.same(view.body.documents.find((d: any) => d.name === 'credentials').content.pins.map((p: any) => [p.code, p.apartment]), [['4321', '101']]);
  t.equal(gateSim.documentFetches.at(-1)?.status, 200, 'documents are fetched over HTTP with the device credentials');

  // Revocation: the PIN leaves the door phone's list; the job shows when the device has applied it.
  const revoke = await A.del(`/credentials/${code.body.id}`);
  t.equal(revoke.status, 204);
  await waitFor(() => gateSim.acceptsPin('4321'), (ok) => !ok);
  const last = (await jobsOf(gate)).sort((x, y) => (x.createdAt < y.createdAt ? 1 : -1))[0];
  t.equal((await waitFor(() => A.get(`/jobs/${last.id}`), (r) => r.body.state === 'succeeded')).body.state, 'succeeded');

  // A validity window is carried to the device, which enforces it.
  await pin(lily.id, '7777', { validFrom: '2020-01-01T00:00:00Z', validUntil: '2021-01-01T00:00:00Z' });
  await waitFor(() => (gateSim.directory.get('credentials')?.content as any)?.pins?.length, (n) => n === 1);
  t.notOk(gateSim.acceptsPin('7777'), 'an expired PIN is listed with its window and does not open');
  t.ok(gateSim.acceptsPin('7777', undefined, new Date('2020-06-01T00:00:00Z')), 'inside its window it would');

  // Apartment reset: residents and their PINs go; the apartment and its monitor stay.
  await pin(lily.id, '2468');
  await waitFor(() => gateSim.acceptsPin('2468'), (ok) => ok);
  const reset = await A.post(`/apartments/${a101.id}/reset`);
  t.same(reset.body, { residentsRemoved: 1, credentialsRemoved: 2, appStationsRemoved: 0, codesRevoked: 0 });
  await waitFor(() => gateSim.acceptsPin('2468'), (ok) => !ok);
  t.same(gateContacts().apartments[0].residents, []);
  t.equal((await A.get(`/devices/${monitor}`)).body.apartmentId, a101.id);

  // Display order follows the site.
  await resident(a102.id, 'Ryan', 'Chen');
  await A.patch(`/sites/${s.id}`, { contactDisplay: 'last-first' });
  await waitFor(() => gateContacts()?.apartments?.[1]?.residents?.[0], (n) => n === 'Chen Ryan');

  // The door phone removed: it leaves the monitor's list.
  await gateSim.stop(false);
  t.equal((await A.del(`/devices/${gate}`)).status, 204);
  await waitFor(() => monitorContacts()?.entrances?.length, (n) => n === 0);
  t.equal(await count(`directory_renders where mac = '${gate}'`), 0);

  // Taken out of the directory, a device loses the directory's part of its configuration.
  await A.patch(`/devices/${monitor}`, { siteId: null });
  await waitFor(() => monitorSim.config.get('Config.Settings.DATETIME.TimeZone'), (tz) => tz === undefined);
  t.equal(monitorSim.directory.size, 0);
});

t.test('a burst of changes to an offline door phone makes one provisioning job', async (t) => {
  const s = await site();
  const b = await building(s.id);
  const gate = '0C1109000001';
  await svc.addDevice(alice.token, gate, { type: 0 });
  await A.patch(`/devices/${gate}`, { siteId: s.id, buildingId: b.id });
  await svc.service.follower.settled();
  for (let i = 0; i < 20; i++) {
    const a = await apartment(b.id, String(200 + i));
    const r = await resident(a.id, 'R', String(i));
    await pin(r.id, String(5000 + i));
  }
  await svc.service.follower.settled();
  const jobs = await jobsOf(gate);
  t.equal(jobs.length, 1, '60 changes, one job: it renders the newest configuration when delivered');
  t.equal(jobs[0].state, 'queued');

  // Once it connects, the device gets all 20 PINs in one delivery.
  const sim = svc.device(gate);
  sim.start();
  await waitFor(() => A.get(`/jobs/${jobs[0].id}`), (r) => r.body.state === 'succeeded');
  t.equal(((sim.directory.get('credentials')?.content as any)?.pins ?? []).length, 20);
  t.equal((await jobsOf(gate)).length, 1, 'and nothing more is needed');
});
