import t from 'tap';
import { SipStation, type SipTransport } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { apiAs, SIP_ON_FREE_PORTS, startTestService, waitFor } from '../helpers/service.js';

if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
// The service starts Kamailio itself (SIP_SERVER unset) on free ports.
const svc = await startTestService(t, SIP_ON_FREE_PORTS);
const sip = svc.service.sip!;
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string) => apiAs(svc.api, token);
const A = as(alice.token);
const B = as(bob.token);

const stations: SipStation[] = [];
t.teardown(() => Promise.all(stations.map((s) => s.stop().catch(() => {}))));
function station(account: { number: string; password: string; authUsername?: string }, transport: SipTransport = 'udp', localAddress?: string) {
  const port = transport === 'udp' ? sip.ports.udp : transport === 'tcp' ? sip.ports.tcp : sip.ports.ws;
  const s = new SipStation({ ...account, domain: sip.domain, server: { host: '127.0.0.1', port, transport }, ...(localAddress && { localAddress }) });
  stations.push(s);
  return s;
}
/** A community with one building and these apartments (number, or number and contact preference). */
async function community(name: string, flats: (string | { number: string; contactPreference: unknown })[]) {
  const site = (await A.post('/sites', { kind: 'community', name, timeZone: 'Europe/Berlin' })).body;
  const building = (await A.post(`/sites/${site.id}/buildings`, { name: 'A' })).body;
  const apartments = [];
  for (const f of flats) apartments.push((await A.post(`/buildings/${building.id}/apartments`, typeof f === 'string' ? { number: f } : f)).body);
  return { site, building, apartments };
}
/** An app station of the apartment, registered by code (the site gets a licence for it). */
async function appAccount(siteId: string, apartmentId: string) {
  await svc.api('PUT', `/api/v1/sites/${siteId}/app-licences`, { token: alice.token, body: { units: 1 } });
  const registration = await A.post(`/apartments/${apartmentId}/app-registrations`);
  const exchanged = await svc.api('POST', new URL(registration.body.registrationUrl).pathname, { body: { name: 'Phone' } });
  return { registration, exchanged, account: { number: exchanged.body.sip.username as string, password: exchanged.body.sip.password as string } };
}
async function device(token: string, mac: string, type: number) {
  const d = await svc.addDevice(token, mac, { type });
  return { mac, number: d.sip.number as string, password: d.sip.password as string };
}

t.test('readiness reports the SIP server', async (t) => {
  const ready = await svc.api('GET', '/readyz');
  t.equal(ready.status, 200);
  t.equal(ready.body.checks.sip, 'ok');
});

t.test("registration reports arriving out of order: the newest by Kamailio's clock wins", async (t) => {
  const d = await device(alice.token, '0C1108000002', 2);
  const later = new Date(Date.now() + 300_000);
  await svc.service.calls.registered({ number: d.number, expiresAt: later, transport: 'tcp', source: '127.0.0.1:5000', userAgent: 'x', reportedAt: '1900000000.000200' });
  // The unregister that came before, reported late by another worker (100 µs earlier).
  await svc.service.calls.registered({ number: d.number, expiresAt: null, transport: 'udp', source: '127.0.0.1:5000', userAgent: 'x', reportedAt: '1900000000.000100' });
  t.equal((await svc.service.calls.sipStates([d.number])).get(d.number)!.status, 'registered');
  await svc.service.calls.registered({ number: d.number, expiresAt: null, transport: 'tcp', source: '127.0.0.1:5000', userAgent: 'x', reportedAt: '1900000000.000300' });
  t.equal((await svc.service.calls.sipStates([d.number])).get(d.number)!.status, 'unregistered', 'a newer unregister applies');
});

t.test('a device registers with its own account; wrong passwords and other accounts are refused', async (t) => {
  const door = await device(alice.token, '0C1108000001', 0);
  const ok = station(door);
  await ok.start();
  t.equal((await ok.register()).status, 200, 'the right password registers');
  const view = await waitFor(() => A.get(`/devices/${door.mac}`), (r) => r.body.sipStatus === 'registered');
  t.ok(view.body.sipLastRegisteredAt, 'the last registration is shown');
  t.notOk(JSON.stringify(view.body).includes(door.password), 'the password is not listed');

  const wrong = station({ ...door, password: 'not-the-password' }, 'tcp');
  await wrong.start();
  t.equal((await wrong.register()).status, 401, 'a wrong password is challenged again');
});

t.test('a door phone calls an apartment: its monitor rings, answers and releases the door by DTMF; the call is recorded', async (t) => {
  const { site, building, apartments: [flat] } = await community('Calls', ['101']);
  const door = await device(alice.token, '0C1108000010', 0);
  const monitor = await device(alice.token, '0C1108000011', 2);
  t.equal((await A.patch(`/devices/${door.mac}`, { siteId: site.id, buildingId: building.id })).status, 200);
  t.equal((await A.patch(`/devices/${monitor.mac}`, { siteId: site.id, apartmentId: flat.id })).status, 200);

  const doorPhone = station(door, 'tcp');
  const indoor = station(monitor, 'udp');
  indoor.autoAnswer = { ringMs: 10 };
  await Promise.all([doorPhone.start(), indoor.start()]);
  t.equal((await doorPhone.register()).status, 200);
  t.equal((await indoor.register()).status, 200);

  const rang = new Promise((resolve) => indoor.once('incoming', resolve));
  const answered = new Promise<any>((resolve) => indoor.once('answered', resolve));
  const call = await doorPhone.call('101');
  t.match(await rang, { from: door.number, to: '101' }, 'the monitor rang for the apartment number');
  const dtmf = new Promise<{ digit: string }>((resolve) => doorPhone.once('dtmf', resolve));
  const indoorCall = await answered;
  await indoorCall.sendDtmf('#');
  t.equal((await dtmf).digit, '#', "the monitor's DTMF reached the door phone");
  await call.hangup();
  const listed = await waitFor(() => A.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'completed');
  t.match(listed.body.items[0], { caller: door.number, dialled: '101', apartmentId: flat.id, answeredBy: monitor.number, outcome: 'completed' });
  t.ok(listed.body.items[0].answeredAt && listed.body.items[0].endedAt);
  t.equal((await B.get(`/sites/${site.id}/calls`)).status, 404, "another installer does not see the site's calls");

  // Outside the site: Bob's monitor is never reached from Alice's door phone.
  const foreign = await device(bob.token, '0C1108000012', 2);
  const refused = await doorPhone.call(foreign.number).then(() => 0, (err: { status?: number }) => err.status ?? -1);
  t.equal(refused, 404, "a number outside the caller's site is not found");
  const unknownFlat = await doorPhone.call('999').then(() => 0, (err: { status?: number }) => err.status ?? -1);
  t.equal(unknownFlat, 404, 'an apartment the site does not have is not found');
});

t.test('nobody registers as another account; repeated wrong passwords block the address', async (t) => {
  const door = await device(alice.token, '0C1108000020', 0);
  const monitor = await device(alice.token, '0C1108000021', 2);
  const impostor = station({ number: monitor.number, password: door.password, authUsername: door.number }, 'udp', '127.0.0.5');
  await impostor.start();
  t.equal((await impostor.register()).status, 403, "the door phone's credentials do not register the monitor's number");

  const guesser = station({ ...door, password: 'guess-guess-guess' }, 'udp', '127.0.0.6');
  await guesser.start();
  // SIP_AUTH_FAILURES (10) wrong digests from one address, then it is refused.
  const statuses: number[] = [];
  while (statuses.length < 12 && statuses.at(-1) !== 403) statuses.push((await guesser.register()).status);
  // A REGISTER may carry two wrong digests (sip.js retries with the cached challenge), so count attempts loosely.
  t.ok(statuses.length >= 2 && statuses.slice(0, -1).every((s) => s === 401), `wrong passwords are challenged again (${statuses.join(' ')})`);
  t.equal(statuses.at(-1), 403, 'then the address is refused');
  const blocked = station(door, 'udp', '127.0.0.6');
  await blocked.start();
  t.equal((await blocked.register()).status, 403, 'even with the right password, for a while');
  const elsewhere = station(door, 'udp', '127.0.0.7');
  await elsewhere.start();
  t.equal((await elsewhere.register()).status, 200, 'other addresses are not affected');
});

t.test('an app station registers by code over WebSocket, calls only its address book, and stops at once when removed', async (t) => {
  const { site, building, apartments: [flat, other] } = await community('Apps', ['201', '202']);
  const door = await device(alice.token, '0C1108000030', 0);
  const neighbour = await device(alice.token, '0C1108000031', 2);
  await A.patch(`/devices/${door.mac}`, { siteId: site.id, buildingId: building.id });
  await A.patch(`/devices/${neighbour.mac}`, { siteId: site.id, apartmentId: other.id });
  const { registration, exchanged, account } = await appAccount(site.id, flat.id);
  t.equal(registration.status, 201);
  t.equal(exchanged.status, 201);
  t.match(exchanged.body.sip.servers, [{ transport: 'ws', port: sip.ports.ws }]);
  t.ok(exchanged.body.addressBook.some((e: { sipNumber: string }) => e.sipNumber === door.number), 'the door phone is in its address book');

  const app = station(account, 'ws');
  const doorPhone = station(door, 'udp');
  const neighbourMonitor = station(neighbour, 'udp');
  doorPhone.autoAnswer = { ringMs: 0 };
  await Promise.all([app.start(), doorPhone.start(), neighbourMonitor.start()]);
  t.equal((await app.register()).status, 200, 'the app registers over WebSocket');
  t.equal((await doorPhone.register()).status, 200);
  t.equal((await neighbourMonitor.register()).status, 200);
  const apps = await waitFor(() => A.get(`/apartments/${flat.id}/app-stations`), (r) => r.body.items?.[0]?.sipStatus === 'registered');
  t.notOk(JSON.stringify(apps.body).includes(account.password), 'no password in the list');

  const call = await app.call(door.number);
  await call.hangup();
  t.pass('the app calls the door phone in its address book');
  const outside = await app.call(neighbour.number).then(() => 0, (err: { status?: number }) => err.status ?? -1);
  t.equal(outside, 403, "a neighbour's monitor is outside its address book (community calls are off)");

  const station0 = apps.body.items[0];
  t.equal((await svc.api('DELETE', `/api/v1/app-stations/${station0.id}`, { token: alice.token })).status, 204);
  const again = station(account, 'ws');
  await again.start();
  t.equal((await again.register()).status, 401, 'a removed app station cannot register any more');
  const refused = await app.call(door.number).then(() => 0, (err: { status?: number }) => err.status ?? -1);
  t.equal(refused, 407, 'nor call: its credentials are refused at once');
});

t.test('sequence calls ring the next step when a step is not answered in time', async (t) => {
  const sequence = { mode: 'sequence', steps: ['indoor-monitors', 'app-accounts'], stepTimeoutSeconds: 5 };
  const { site, building, apartments: [flat] } = await community('Sequence', [{ number: '301', contactPreference: sequence }]);
  t.ok(flat.id, JSON.stringify(flat));
  const door = await device(alice.token, '0C1108000040', 0);
  const monitor = await device(alice.token, '0C1108000041', 2);
  await A.patch(`/devices/${door.mac}`, { siteId: site.id, buildingId: building.id });
  await A.patch(`/devices/${monitor.mac}`, { siteId: site.id, apartmentId: flat.id });
  const { exchanged, account } = await appAccount(site.id, flat.id);
  const app = station(account, 'ws');
  const indoor = station(monitor, 'tcp');
  const doorPhone = station(door, 'udp');
  app.autoAnswer = { ringMs: 0 };
  await Promise.all([app.start(), indoor.start(), doorPhone.start()]);
  for (const s of [app, indoor, doorPhone]) t.equal((await s.register()).status, 200);

  const order: string[] = [];
  indoor.on('incoming', () => order.push('monitor'));
  indoor.on('ended', () => order.push('monitor stopped'));
  app.on('incoming', () => order.push('app'));
  const call = await doorPhone.call('301');
  t.same(order.slice(0, 2), ['monitor', 'app'], 'the monitor first; after its step timed out, the app');
  await call.hangup();
  const listed = await waitFor(() => A.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'completed');
  t.equal(listed.body.items[0].answeredBy, exchanged.body.sip.username, 'answered by the app');
});
}

if (findKamailio()) {
  t.test('a Kamailio that dies is restarted, and stations register again', async (t) => {
    const svc2 = await startTestService(t, SIP_ON_FREE_PORTS);
    const installer = await svc2.createInstaller('Carol');
    const d = await svc2.addDevice(installer.token, '0C1108000090', { type: 0 });
    const first = svc2.service.sipServerPid();
    t.ok(first, 'Kamailio runs');
    process.kill(first!, 'SIGKILL');
    const notReady = await waitFor(() => svc2.api('GET', '/readyz'), (r) => r.status === 503);
    t.equal(notReady.body.checks.sip, 'failing', 'readiness says so while it is down');
    await waitFor(() => svc2.api('GET', '/readyz'), (r) => r.status === 200 && r.body.checks.sip === 'ok');
    t.not(svc2.service.sipServerPid(), first, 'a new Kamailio runs');
    const s = new SipStation({ number: d.sip.number, password: d.sip.password, domain: svc2.service.sip!.domain, server: { host: '127.0.0.1', port: svc2.service.sip!.ports.udp, transport: 'udp' } });
    t.teardown(() => s.stop().catch(() => {}));
    await s.start();
    t.equal((await s.register()).status, 200, 'on the same port, with the same accounts');
  });
}
