import t from 'tap';
import { SipStation, type SipTransport } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { startTestService, waitFor } from '../helpers/service.js';

if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
// The service starts Kamailio itself (SIP_SERVER unset) on free ports.
const svc = await startTestService(t, { SIP_SERVER: undefined, SIP_HOST: '127.0.0.1', SIP_UDP_PORT: '0', SIP_TCP_PORT: '0', SIP_TLS_PORT: '0', SIP_WS_PORT: '0', SIP_WSS_PORT: '0' });
const sip = svc.service.sip!;
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string) => ({
  get: (path: string) => svc.api('GET', `/api/v1${path}`, { token }),
  post: (path: string, body: unknown = {}) => svc.api('POST', `/api/v1${path}`, { token, body }),
  patch: (path: string, body: unknown) => svc.api('PATCH', `/api/v1${path}`, { token, body }),
});
const A = as(alice.token);
const B = as(bob.token);

const stations: SipStation[] = [];
t.teardown(() => Promise.all(stations.map((s) => s.stop().catch(() => {}))));
function station(account: { number: string; password: string }, transport: SipTransport = 'udp') {
  const port = transport === 'udp' ? sip.ports.udp : transport === 'tcp' ? sip.ports.tcp : sip.ports.ws;
  const s = new SipStation({ number: account.number, password: account.password, domain: sip.domain, server: { host: '127.0.0.1', port, transport } });
  stations.push(s);
  return s;
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
  const site = (await A.post('/sites', { kind: 'community', name: 'Calls', timeZone: 'Europe/Berlin' })).body;
  const building = (await A.post(`/sites/${site.id}/buildings`, { name: 'A' })).body;
  const flat = (await A.post(`/buildings/${building.id}/apartments`, { number: '101' })).body;
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
}
