import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { sampleIxgSite, uploadIxgSite } from '../../simulators/ixg-gateway.js';
import { FACTORY_SECRET, startTestService } from '../helpers/service.js';

// An IXG site (seed 000): its IXGW-(T)GW gateway uploads the system's settings; the site mirrors them,
// read-only but for what the IXG portal lets an installer do; each upload's diff is in the site's audit.
const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const api = (method: string, path: string, body?: unknown, token = alice.token) => svc.api(method, `/api/v1${path}`, { token, ...(body === undefined ? {} : { body }) });
const key = (mac: string) => deriveDeviceKey(FACTORY_SECRET, mac);
const upload = (mac: string, doc: unknown, k = key(mac)) => uploadIxgSite(svc.httpUrl, mac, k, doc);

const GW = '0C1120000001';
await svc.addDevice(alice.token, GW, { type: 'ixgw', name: 'IXG gateway' });
const site = (await api('POST', '/sites', { kind: 'community', name: 'IXG Tower', timeZone: 'Europe/Berlin' })).body;
const doc = sampleIxgSite({ gatewayMac: GW });

t.test('who may upload: the placed IXG gateway alone, with its own credentials', async (t) => {
  t.equal((await upload(GW, doc, 'wrong')).status, 401, 'wrong device key');
  t.equal((await fetch(`${svc.httpUrl}/ixg/${GW}/site`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401, 'anonymous');
  const other = '0C1120000002';
  await svc.addDevice(bob.token, other, { type: 'ixgw', name: "Bob's gateway" });
  t.equal((await upload(other, doc, key(GW))).status, 401, "Alice's gateway key does not open Bob's gateway");
  const notPlaced = await upload(GW, doc);
  t.equal(notPlaced.status, 409);
  t.equal(notPlaced.body.error.code, 'gateway_not_placed');
  const door = '0C1120000003';
  await svc.addDevice(alice.token, door, { type: 0, name: 'A door phone' });
  t.equal((await upload(door, sampleIxgSite({ gatewayMac: door }))).status, 403, 'a door phone is no IXG gateway');
  t.equal((await api('PATCH', `/devices/${GW}`, { siteId: site.id })).status, 200);
  const notListed = await upload(GW, sampleIxgSite({ gatewayMac: '0C11200000FF' }));
  t.equal(notListed.body.error?.code, 'gateway_not_listed');
  const dangling = sampleIxgSite({ gatewayMac: GW });
  dangling.buildings[0]!.units[1]!.apps[0]!.addressBook.push({ station: '9999', doorRelease: true });
  const bad = await upload(GW, dangling);
  t.equal(bad.status, 400);
  t.match(JSON.stringify(bad.body.error.details), /no station 9999/);
  t.equal((await api('GET', `/sites/${site.id}`)).body.managedBy, null, 'a refused upload leaves no trace');

  // A site with a directory of its own is not taken over; an upload over 8 MiB is refused before it is read whole.
  const ours = (await api('POST', '/sites', { kind: 'community', name: 'Ours', timeZone: 'Europe/Berlin' })).body;
  await api('POST', `/sites/${ours.id}/buildings`, { name: 'Tower A' });
  const second = '0C1120000004';
  await svc.addDevice(alice.token, second, { type: 'ixgw', name: 'Second gateway' });
  await api('PATCH', `/devices/${second}`, { siteId: ours.id });
  const taken = await upload(second, sampleIxgSite({ gatewayMac: second }));
  t.equal(taken.body.error?.code, 'site_not_empty');
  t.same((await api('GET', `/sites/${ours.id}/buildings`)).body.items.map((b: any) => b.name), ['Tower A'], 'its building is untouched');
  const huge = { ...sampleIxgSite({ gatewayMac: second }), padding: 'x'.repeat(9 * 1024 * 1024) };
  t.equal((await upload(second, huge)).status, 413);
});

t.test('an upload mirrors buildings and units; the directory is read-only there but for apps', async (t) => {
  const res = await upload(GW, doc);
  t.equal(res.status, 200, JSON.stringify(res.body));
  t.match(res.body, { siteId: site.id, version: 1, unchanged: false, counts: { buildings: { added: 2 }, units: { added: 8 }, stations: { added: 8 }, apps: { added: 6 } } });
  t.equal((await api('GET', `/sites/${site.id}`)).body.managedBy, 'ixg');
  const buildings = (await api('GET', `/sites/${site.id}/buildings`)).body.items;
  t.same(buildings.map((b: any) => [b.ixgNumber, b.name]).sort(), [
    ['01', 'Building1'],
    ['02', 'Building2'],
  ]);
  const units = (await api('GET', `/buildings/${buildings.find((b: any) => b.ixgNumber === '01').id}/apartments`)).body.items;
  t.same(units.map((u: any) => [u.number, u.name, u.unitType]).sort(), [
    ['101', 'Residential101', 'residential'],
    ['102', 'Residential102', 'residential'],
    ['103', 'Residential103', 'residential'],
    ['901', 'Entrance1', 'entrance'],
  ]);
  const unit = units.find((u: any) => u.number === '101');

  for (const [method, path, body] of [
    ['POST', `/sites/${site.id}/buildings`, { name: 'Annex' }],
    ['PATCH', `/buildings/${buildings[0].id}`, { name: 'Renamed' }],
    ['DELETE', `/buildings/${buildings[0].id}`, undefined],
    ['POST', `/buildings/${buildings[0].id}/apartments`, { number: '555' }],
    ['PATCH', `/apartments/${unit.id}`, { name: 'Mine' }],
    ['DELETE', `/apartments/${unit.id}`, undefined],
    ['POST', `/apartments/${unit.id}/residents`, { firstName: 'Lily', lastName: 'Green' }],
  ] as const) {
    const r = await api(method, path, body);
    t.equal(r.status, 409, `${method} ${path}`);
    t.equal(r.body.error.code, 'ixg_managed');
  }
  const template = await svc.api('POST', `/api/v1/sites/${site.id}/import`, { token: alice.token, raw: 'Building,Apt\nBuilding1,777', contentType: 'text/csv' });
  t.equal(template.body.error.code, 'ixg_managed', 'no template import either');
  // What the IXG portal lets an installer do: licences and app registration by QR code.
  t.equal((await api('PUT', `/sites/${site.id}/app-licences`, { units: 2 })).status, 200);
  const code = await api('POST', `/apartments/${unit.id}/app-registrations`, {});
  t.equal(code.status, 201, JSON.stringify(code.body));

  const view = await api('GET', `/sites/${site.id}/ixg`);
  t.equal(view.status, 200);
  t.match(view.body, { siteId: site.id, gatewayMac: GW, version: 1, settings: { site: { name: 'IXG Tower' } } });
  t.equal((await api('GET', `/sites/${site.id}/ixg`, undefined, bob.token)).status, 404, "Bob cannot see Alice's IXG site");
  t.equal((await fetch(`${svc.httpUrl}/api/v1/sites/${site.id}/ixg`)).status, 401, 'anonymous');
  const pm = (await api('POST', '/property-managers', { name: 'Paula', email: 'paula@ixg.test', siteIds: [site.id] })).body;
  t.equal((await api('GET', `/sites/${site.id}/ixg`, undefined, pm.token.token)).status, 200, 'the property manager of the site sees it');
});

t.test('a re-upload changes what changed, with its diff in the audit; the same upload again writes nothing', async (t) => {
  const audit = async () => (await api('GET', `/sites/${site.id}/audit?pageSize=100`)).body.items.filter((e: any) => e.action === 'ixg.uploaded');
  const same = await upload(GW, doc);
  t.match(same.body, { version: 1, unchanged: true });
  t.equal((await audit()).length, 1, 'one audit row: the first upload');

  const next = structuredClone(doc);
  next.buildings[0]!.name = 'Tower North';
  next.buildings[0]!.units[1]!.name = 'Penthouse'; // unit 101 (the entrance unit comes first)
  next.buildings[0]!.units.splice(3, 1); // unit 103 goes
  next.buildings[1]!.units.push({ number: '201', name: 'Residential201', type: 'commercial', stations: [], apps: [] });
  const res = await upload(GW, next);
  t.match(res.body, { version: 2, unchanged: false, counts: { buildings: { changed: 1 }, units: { added: 1, removed: 1, changed: 1 }, stations: { removed: 1 }, apps: { removed: 1 } } });
  const rows = await audit();
  t.equal(rows.length, 2);
  t.match(rows[0].details, { version: 2 });
  t.ok(rows[0].details.changes.includes('units 01/103: removed'));
  t.ok(rows[0].details.changes.includes('units 02/201: added'));
  const buildings = (await api('GET', `/sites/${site.id}/buildings`)).body.items;
  const north = buildings.find((b: any) => b.ixgNumber === '01');
  t.equal(north.name, 'Tower North');
  const units = (await api('GET', `/buildings/${north.id}/apartments`)).body.items;
  t.same(units.map((u: any) => [u.number, u.name]).sort(), [
    ['101', 'Penthouse'],
    ['102', 'Residential102'],
    ['901', 'Entrance1'],
  ]);
});

t.test('Status of Apps: units with apps, active apps, and a daily series', async (t) => {
  const unit = (await api('GET', `/buildings/${(await api('GET', `/sites/${site.id}/buildings`)).body.items.find((b: any) => b.ixgNumber === '01').id}/apartments`)).body.items.find((u: any) => u.number === '101');
  const code = (await api('POST', `/apartments/${unit.id}/app-registrations`, {})).body;
  const redeemed = await svc.api('POST', `/api/v1/app-registrations/${code.code}`, { body: { name: 'Lily phone' } });
  t.equal(redeemed.status, 201, JSON.stringify(redeemed.body));
  const status = await api('GET', `/sites/${site.id}/app-status?days=7`);
  t.equal(status.status, 200);
  t.match(status.body, { unitsWithApps: 1, apps: 1, activeApps: 0 });
  t.equal(status.body.daily.length, 1, 'only today so far');
  await svc.service.appStatus.snapshot();
  await svc.sql("insert into app_status_days (site_id, day, units_with_apps, active_apps) values ($1, '2000-01-01', 5, 5)", [site.id]);
  const again = (await api('GET', `/sites/${site.id}/app-status?days=7`)).body;
  t.same(again.daily.map((d: any) => [d.unitsWithApps, d.activeApps]), [[1, 0]], 'a day outside the window is left out; today counted once');
  t.equal((await api('GET', `/sites/${site.id}/app-status`, undefined, bob.token)).status, 404);
  t.equal((await api('GET', `/sites/${site.id}/app-status?days=0`)).status, 400);
});
