import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import t from 'tap';
import { startTestService } from '../helpers/service.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string) => ({
  get: (path: string) => svc.api('GET', `/api/v1${path}`, { token }),
  post: (path: string, body?: unknown) => svc.api('POST', `/api/v1${path}`, { token, body }),
  put: (path: string, body: unknown) => svc.api('PUT', `/api/v1${path}`, { token, body }),
  patch: (path: string, body: unknown) => svc.api('PATCH', `/api/v1${path}`, { token, body }),
  del: (path: string) => svc.api('DELETE', `/api/v1${path}`, { token }),
});
const A = as(alice.token);
const B = as(bob.token);
const count = async (table: string) => (await svc.sql(`select count(*)::int as n from ${table}`))[0].n as number;

/** Redeems a code as an app does: no token. */
const redeem = (code: string, body?: unknown) => svc.api('POST', `/api/v1/app-registrations/${code}`, { token: null, body });

/** The same, from another loopback address (its failures count apart). */
function redeemFrom(localAddress: string, code: string): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  const url = new URL(`${svc.httpUrl}/api/v1/app-registrations/${code}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null, headers: res.headers }));
    });
    req.on('error', reject);
    req.end('{}');
  });
}

async function ok(res: { status: number; body: any }, status = 201) {
  if (res.status !== status) throw new Error(`${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

// Seaside: building A with apartments 101, 102, 103; building B with 201.
const site = await ok(await A.post('/sites', { kind: 'community', name: 'Seaside', timeZone: 'UTC' }));
const bA = await ok(await A.post(`/sites/${site.id}/buildings`, { name: 'A' }));
const bB = await ok(await A.post(`/sites/${site.id}/buildings`, { name: 'B' }));
const a101 = await ok(await A.post(`/buildings/${bA.id}/apartments`, { number: '101' }));
const a102 = await ok(await A.post(`/buildings/${bA.id}/apartments`, { number: '102' }));
const a103 = await ok(await A.post(`/buildings/${bA.id}/apartments`, { number: '103' }));
const a201 = await ok(await A.post(`/buildings/${bB.id}/apartments`, { number: '201' }));
const bobSite = await ok(await B.post('/sites', { kind: 'community', name: 'Bob site', timeZone: 'UTC' }));
const bobApartment = await ok(await B.post(`/buildings/${(await ok(await B.post(`/sites/${bobSite.id}/buildings`, { name: 'X' }))).id}/apartments`, { number: '1' }));

// Devices: a public door phone with a door relay, a guard phone of building A without one, a door phone of
// building B (not serving 101), an indoor monitor in 101 and one in 102.
const relay = { name: 'Main door', dtmf: '#', enabled: true };
const place = async (mac: string, fields: Record<string, unknown>, placement: Record<string, unknown>) => {
  await svc.addDevice(alice.token, mac, fields);
  await ok(await A.patch(`/devices/${mac}`, { siteId: site.id, ...placement }), 200);
};
await place('0C1114000001', { type: 0, name: 'Main entrance', location: 'Gate', relays: [relay] }, {});
await place('0C1114000002', { type: 3, name: 'Guard A' }, { buildingId: bA.id });
await place('0C1114000003', { type: 0, name: 'Door B', relays: [relay] }, { buildingId: bB.id });
await place('0C1114000004', { type: 2, name: 'Monitor 101' }, { apartmentId: a101.id });
await place('0C1114000005', { type: 2, name: 'Monitor 102' }, { apartmentId: a102.id });
await place('0C1114000006', { type: 0, name: 'Side gate', relays: [{ ...relay, enabled: false }] }, {});
const sipOf = async (mac: string) => (await ok(await A.get(`/devices/${mac}`), 200)).sipNumber as string;

const newCode = async (apartmentId: string, api = A) => ok(await api.post(`/apartments/${apartmentId}/app-registrations`));

t.test('licences: set and read; validated; another installer sees nothing', async (t) => {
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 0, used: 0 }, 'no licence: 0 units');
  for (const units of [-1, 100_001, 1.5, '3']) t.equal((await A.put(`/sites/${site.id}/app-licences`, { units })).status, 400, `units ${JSON.stringify(units)} is refused`);
  t.equal((await A.put(`/sites/${site.id}/app-licences`, { units: 1, extra: true })).status, 400, 'an unknown field is refused');
  const set = await A.put(`/sites/${site.id}/app-licences`, { units: 1 });
  t.equal(set.status, 200);
  t.same(set.body, { units: 1, used: 0, appStationsRemoved: 0, codesRevoked: 0 });
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 1, used: 0 });
  t.equal((await B.get(`/sites/${site.id}/app-licences`)).status, 404);
  t.equal((await B.put(`/sites/${site.id}/app-licences`, { units: 5 })).status, 404, "nor changes Alice's licences");
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body.units, 1);
  const audit = await svc.sql(`select action, subject, details from write_audit where action = 'app-licences.set'`);
  t.match(audit, [{ subject: site.id, details: { units: 1, before: 0 } }], 'the write is audited');
});

let first: any;
let firstCode: string;

t.test('a registration code: random, one-time, shown once with its URL and QR code; only its hash kept', async (t) => {
  const res = await A.post(`/apartments/${a101.id}/app-registrations`);
  t.equal(res.status, 201);
  const { code, registrationUrl, qr, expiresAt, id } = res.body;
  firstCode = code;
  t.match(code, /^[A-Z2-7]{26}$/, '26 characters of base32: 128 bits');
  t.equal(registrationUrl, `${svc.service.publicUrl}/api/v1/app-registrations/${code}`);
  t.equal(qr.text, registrationUrl, 'the QR code encodes the registration URL');
  t.match(qr.png, /^data:image\/png;base64,[A-Za-z0-9+/]+=*$/);
  const png = Buffer.from(qr.png.slice('data:image/png;base64,'.length), 'base64');
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG image');
  const expires = Date.parse(expiresAt) - Date.now();
  t.ok(expires > 24 * 3600_000 - 60_000 && expires <= 24 * 3600_000, 'valid 24 h');
  const rows = await svc.sql('select * from app_registration_codes where id = $1', [id]);
  t.equal(rows[0].code_hash, createHash('sha256').update(code).digest('hex'), 'its SHA-256 is stored');
  t.notOk(JSON.stringify(rows).includes(code), 'the code itself is not');
  const audit = await svc.sql(`select details from write_audit where action = 'app-registration.created' and subject = $1`, [id]);
  t.equal(audit.length, 1, 'audited');
  t.notOk(JSON.stringify(audit).includes(code), 'without the code');
  t.equal((await B.post(`/apartments/${a101.id}/app-registrations`)).status, 404, "another installer's apartment is not found");
  t.equal((await B.post(`/apartments/${bobApartment.id}/app-registrations`)).body.error.code, 'licence_exhausted', 'Bob has no licence for his own site');
});

t.test('a bad body is refused before anything is written; the code stays usable', async (t) => {
  const stations = await count('app_stations');
  for (const body of [{ name: 'Lily\nphone' }, { name: 'Lily', extra: 1 }, { name: '' }, { name: 'x'.repeat(65) }, { name: 7 }]) {
    const res = await redeem(firstCode, body);
    t.equal(res.status, 400, `${JSON.stringify(body)} is refused`);
    t.equal(res.body.error.code, 'validation_error');
    t.ok(typeof res.body.error.message === 'string' && 'details' in res.body.error, 'the standard error body');
  }
  t.equal(await count('app_stations'), stations, 'no station was made');
  t.same(await svc.sql('select used_at from app_registration_codes where code_hash = $1', [createHash('sha256').update(firstCode).digest('hex')]), [{ used_at: null }], 'nor the code used');
});

t.test('redeeming a code: a SIP account and the address book of the apartment', async (t) => {
  const res = await redeem(firstCode, { name: 'Lily phone' });
  t.equal(res.status, 201);
  first = res.body;
  t.match(first.station, { name: 'Lily phone', apartmentId: a101.id, siteId: site.id });
  t.match(first.station.sipNumber, /^\d+$/);
  t.equal(first.sip.username, first.station.sipNumber);
  t.match(first.sip.password, /^[A-Za-z0-9]{16}$/);
  t.same(first.sip.servers, [], 'SIP is off in this service: no servers');
  t.equal(first.sip.domain, null);
  t.same(first.addressBook, [
    { sipNumber: await sipOf('0C1114000001'), name: 'Main entrance', type: 'door-phone', location: 'Gate', doorRelease: true },
    { sipNumber: await sipOf('0C1114000006'), name: 'Side gate', type: 'door-phone', location: null, doorRelease: false },
    { sipNumber: await sipOf('0C1114000002'), name: 'Guard A', type: 'guard-phone', location: null, doorRelease: false },
    { sipNumber: await sipOf('0C1114000004'), name: 'Monitor 101', type: 'indoor-monitor', location: null, doorRelease: false },
  ], "the public door phones, the building's guard phone and the apartment's monitor; not building B's door phone nor 102's monitor");
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 1, used: 1 }, 'the licence is in use');

  const account = await svc.service.appStations.account(first.station.sipNumber);
  t.same(account, { id: first.station.id, siteId: site.id, apartmentId: a101.id, installerId: alice.id, password: first.sip.password }, 'the SIP server finds the account');
  t.equal(await svc.service.appStations.account('999999999'), null);
  t.same(await svc.service.appStations.addressBook(first.station.sipNumber), first.addressBook, 'the address book by station number');
  t.equal(await svc.service.appStations.addressBook('999999999'), null);

  const audit = await svc.sql(`select account_id, details from write_audit where action = 'app-station.registered'`);
  t.match(audit, [{ account_id: alice.id, details: { apartmentId: a101.id, sipNumber: first.station.sipNumber, name: 'Lily phone' } }], "audited as the code issuer's write");
  const everything = JSON.stringify(await svc.sql('select * from write_audit'));
  t.notOk(everything.includes(first.sip.password), 'no password in the audit');

  const again = await redeem(firstCode, { name: 'Thief' });
  t.equal(again.status, 404, 'a code works once');
  t.equal(again.body.error.code, 'registration_code_invalid');
  t.equal((await redeem(firstCode.toLowerCase())).status, 404, 'also typed in lower case');
});

t.test('an expired code, an unknown code, a malformed code: the same 404', async (t) => {
  const { code } = await newCode(a101.id);
  const clock = svc.service.appStations.now;
  t.teardown(() => void (svc.service.appStations.now = clock));
  svc.service.appStations.now = () => new Date(Date.now() + 24 * 3600_000 + 1000);
  const expired = await redeem(code);
  svc.service.appStations.now = clock;
  const guessed = await redeem('ABCDEFGHIJKLMNOPQRSTUVWXYZ');
  const malformed = await redeem('not-a-code');
  for (const res of [expired, guessed, malformed]) {
    t.equal(res.status, 404);
    t.same(res.body.error, { code: 'registration_code_invalid', message: expired.body.error.message, details: null }, 'nothing tells them apart');
  }
  t.equal((await redeem(code)).status, 201, 'before it expires the code works (no body: a default name)');
  t.equal((await A.get(`/apartments/${a101.id}/app-stations`)).body.items[1].name, 'App 2');
});

t.test('concurrent redemptions: a code is used once; the last slot goes to one app', async (t) => {
  const slots = 8 - (await A.get(`/apartments/${a101.id}/app-stations`)).body.items.length;
  t.ok(slots >= 2);
  const shared = await newCode(a101.id);
  const same = await Promise.all([redeem(shared.code), redeem(shared.code), redeem(shared.code)]);
  t.same(same.map((r) => r.status).sort(), [201, 404, 404], 'one app gets the station');
  while ((await A.get(`/apartments/${a101.id}/app-stations`)).body.items.length < 7) await ok(await redeem((await newCode(a101.id)).code));
  const rivals = await Promise.all([newCode(a101.id), newCode(a101.id), newCode(a101.id)]);
  const raced = await Promise.all(rivals.map((c) => redeem(c.code)));
  t.same(raced.map((r) => r.status).sort(), [201, 409, 409], 'the eighth slot is taken once');
  t.equal((await A.get(`/apartments/${a101.id}/app-stations`)).body.items.length, 8);
  // Back to 2 apps, as the next test expects.
  for (const s of (await A.get(`/apartments/${a101.id}/app-stations`)).body.items.slice(2)) await ok(await A.del(`/app-stations/${s.id}`), 204);
});

t.test('8 apps per apartment: a ninth is refused, also when its code was made earlier', async (t) => {
  const early = await newCode(a101.id);
  while ((await A.get(`/apartments/${a101.id}/app-stations`)).body.items.length < 8) await ok(await redeem((await newCode(a101.id)).code));
  const ninth = await A.post(`/apartments/${a101.id}/app-registrations`);
  t.equal(ninth.status, 409);
  t.equal(ninth.body.error.code, 'apartment_full');
  const late = await redeem(early.code);
  t.equal(late.status, 409, 'the count is checked again when the code is redeemed');
  t.equal(late.body.error.code, 'apartment_full');
  t.equal((await A.get(`/apartments/${a101.id}/app-stations`)).body.items.length, 8);
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 1, used: 1 }, 'one unit, whatever its number of apps');
});

t.test('licences: a second apartment needs a second licence; the count cannot drop below its use', async (t) => {
  const refused = await A.post(`/apartments/${a102.id}/app-registrations`);
  t.equal(refused.status, 403);
  t.equal(refused.body.error.code, 'licence_exhausted');
  t.match(refused.body.error.details, { units: 1, used: 1 });
  t.equal((await A.put(`/sites/${site.id}/app-licences`, { units: 0 })).body.error.code, 'licence_in_use');

  await ok(await A.put(`/sites/${site.id}/app-licences`, { units: 2 }), 200);
  const for102 = await newCode(a102.id);
  const for103 = await newCode(a103.id);
  await ok(await A.put(`/sites/${site.id}/app-licences`, { units: 1 }), 200);
  const late = await redeem(for102.code);
  t.equal(late.status, 403, 'the licence is checked again when the code is redeemed');
  t.equal(late.body.error.code, 'licence_exhausted');
  await ok(await A.put(`/sites/${site.id}/app-licences`, { units: 2 }), 200);
  const b102 = await ok(await redeem(for102.code));
  t.same(b102.addressBook.map((e: any) => e.name), ['Main entrance', 'Side gate', 'Guard A', 'Monitor 102']);
  t.equal((await redeem(for103.code)).body.error.code, 'licence_exhausted', 'two licences, two units');
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 2, used: 2 });
  const b201 = await A.post(`/apartments/${a201.id}/app-registrations`);
  t.equal(b201.body.error.code, 'licence_exhausted');
});

t.test('listing shows no password; deleting frees the slot and the account at once', async (t) => {
  const list = await A.get(`/apartments/${a101.id}/app-stations`);
  t.equal(list.status, 200);
  t.equal(list.body.items.length, 8);
  for (const s of list.body.items) t.same(Object.keys(s).sort(), ['createdAt', 'id', 'ixgApp', 'name', 'sipLastRegisteredAt', 'sipNumber', 'sipStatus']);
  t.notOk(JSON.stringify(list.body).includes(first.sip.password));
  t.equal((await B.get(`/apartments/${a101.id}/app-stations`)).status, 404);

  t.equal((await B.del(`/app-stations/${first.station.id}`)).status, 404, "another installer cannot remove Alice's app");
  const removed = await A.del(`/app-stations/${first.station.id}`);
  t.equal(removed.status, 204);
  t.equal((await svc.sql('select count(*)::int as n from app_stations where id = $1', [first.station.id]))[0].n, 0, 'the row is gone');
  t.equal(await svc.service.appStations.account(first.station.sipNumber), null, 'the SIP account with it');
  t.equal((await A.del(`/app-stations/${first.station.id}`)).status, 404);
  t.match(await svc.sql(`select details from write_audit where action = 'app-station.removed' and subject = $1`, [first.station.id]), [{ details: { apartmentId: a101.id } }]);
  t.equal((await A.post(`/apartments/${a101.id}/app-registrations`)).status, 201, 'a new code for the apartment that was full');

  // All of 102's apps gone: its licence is free for 103.
  for (const s of (await A.get(`/apartments/${a102.id}/app-stations`)).body.items) await ok(await A.del(`/app-stations/${s.id}`), 204);
  t.same((await A.get(`/sites/${site.id}/app-licences`)).body, { units: 2, used: 1 });
  t.equal((await A.post(`/apartments/${a103.id}/app-registrations`)).status, 201);
});

t.test("a property manager makes codes and removes apps in its sites, but sets no licences", async (t) => {
  const pm = (await ok(await A.post('/property-managers', { name: 'Paula', email: 'paula@apps.test', siteIds: [site.id] }))).token.token as string;
  const P = as(pm);
  t.equal((await P.post(`/apartments/${a101.id}/app-registrations`)).status, 201);
  t.equal((await P.get(`/apartments/${a101.id}/app-stations`)).status, 200);
  t.equal((await P.put(`/sites/${site.id}/app-licences`, { units: 50 })).status, 403);
  t.equal((await P.post(`/apartments/${bobApartment.id}/app-registrations`)).status, 404);
  const appId = (await P.get(`/apartments/${a101.id}/app-stations`)).body.items[0].id;
  t.equal((await P.del(`/app-stations/${appId}`)).status, 204);
  const audit = await svc.sql(`select account_id from write_audit where action = 'app-station.removed' and subject = $1`, [appId]);
  t.equal(audit.length, 1);
  t.not(audit[0].account_id, alice.id, "audited as the property manager's write");
});

t.test('failed redemptions are limited per source address', async (t) => {
  // From an address of its own (127.0.0.3): 10 failures in a minute, then every attempt is refused.
  const valid = await newCode(a101.id);
  for (let i = 0; i < 10; i++) {
    const res = await redeemFrom('127.0.0.3', `AAAAAAAAAAAAAAAAAAAAAAAA${String.fromCharCode(65 + i)}A`);
    t.equal(res.status, 404, `failure ${i + 1}`);
  }
  const blocked = await redeemFrom('127.0.0.3', valid.code);
  t.equal(blocked.status, 429, 'the 11th attempt is refused, even with a valid code');
  t.equal(blocked.body.error.code, 'too_many_attempts');
  t.ok('message' in blocked.body.error && 'details' in blocked.body.error);
  t.equal(blocked.headers['retry-after'], '60');
  const elsewhere = await redeem(valid.code);
  t.equal(elsewhere.status, 201, 'another address is not held back');
  t.equal(elsewhere.body.station.apartmentId, a101.id);
});

t.test('the routes are documented at /docs from their schemas', async (t) => {
  const spec = (await svc.api('GET', '/docs/json', { token: null })).body;
  const exchange = spec.paths['/api/v1/app-registrations/{code}'].post;
  t.ok(exchange.summary);
  t.same(exchange.security, [], 'redeeming needs no token');
  t.ok(exchange.responses['201'] && exchange.responses['429'] && exchange.responses['404']);
  t.ok(exchange.requestBody.content['application/json'].schema.properties.name, 'the body is documented');
  for (const [path, method] of [
    ['/api/v1/sites/{siteId}/app-licences', 'put'],
    ['/api/v1/sites/{siteId}/app-licences', 'get'],
    ['/api/v1/apartments/{apartmentId}/app-registrations', 'post'],
    ['/api/v1/apartments/{apartmentId}/app-stations', 'get'],
    ['/api/v1/app-stations/{appStationId}', 'delete'],
  ] as const) {
    t.ok(spec.paths[path]?.[method]?.summary, `${method.toUpperCase()} ${path}`);
  }
});
