import t from 'tap';
import { AppStationSimulator } from '../../simulators/app-station.js';
import { IxgGatewaySimulator, sampleIxgSite, uploadIxgSite, type IxgDoorRelease } from '../../simulators/ixg-gateway.js';
import type { SipRegistration } from '../../simulators/device-simulator.js';
import type { IncomingCall } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, SIP_ON_FREE_PORTS, startTestService, waitFor } from '../helpers/service.js';

// Issue 21 "Done when": an app registered by an IXG unit's QR code rings when an IXG door station calls
// the unit through the IXGW gateway, and opens that station's door; an app whose listing has no door
// release for the station is refused; nobody but the gateway asks for a release.

if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const alice = await svc.createInstaller('Alice');
  const bob = await svc.createInstaller('Bob');
  const api = (method: string, path: string, body?: unknown, token = alice.token) => svc.api(method, `/api/v1${path}`, { token, ...(body === undefined ? {} : { body }) });
  const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
    const r = await res;
    if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const apps: AppStationSimulator[] = [];
  t.teardown(() => Promise.all(apps.map((a) => a.stop().catch(() => {}))));

  // Alice's IXG site: unit 101 of building 01 lists two apps, only the first with door release at the
  // entrance station 0010; unit 102 lists one.
  const GW = '0C1130000001';
  const gwRecord = await svc.addDevice(alice.token, GW, { type: 'ixgw', name: 'IXG gateway' });
  const site = await ok(api('POST', '/sites', { kind: 'community', name: 'IXG Tower', timeZone: 'Europe/Berlin' }), 201);
  await ok(api('PATCH', `/devices/${GW}`, { siteId: site.id }));
  const doc = sampleIxgSite({ gatewayMac: GW, buildings: 1, units: 2, appsPerUnit: 2 });
  const unit101 = doc.buildings[0]!.units[1]!;
  unit101.apps[1]!.addressBook[0]!.doorRelease = false;
  const DOOR = doc.buildings[0]!.units[0]!.stations[0]!.number;
  await ok(uploadIxgSite(svc.httpUrl, GW, deriveDeviceKey(FACTORY_SECRET, GW), doc));
  await ok(api('PUT', `/sites/${site.id}/app-licences`, { units: 2 }));
  const [building] = (await ok(api('GET', `/sites/${site.id}/buildings`))).items;
  const flats = (await ok(api('GET', `/buildings/${building.id}/apartments`))).items;
  const flat = flats.find((a: any) => a.number === '101');

  const gateway = svc.device(GW, { model: 'IXGW-TGW', reconnect: { minMs: 50, maxMs: 200 }, sip: { enabled: true } });
  const ixg = new IxgGatewaySimulator(gateway, svc.httpUrl);
  t.teardown(() => ixg.stop());

  let first: AppStationSimulator;
  let second: AppStationSimulator;
  await t.test("apps connect by the unit's QR code: each takes one of the unit's app listings, with its address book", async (t) => {
    const registered = new Promise<SipRegistration>((resolve) => gateway.on('sip-registered', (r: SipRegistration) => r.status === 200 && resolve(r)));
    gateway.start();
    t.equal((await registered).number, gwRecord.sip.number, 'the gateway registers over SIP with its own account');

    const code = async () => (await ok(api('POST', `/apartments/${flat.id}/app-registrations`), 201)).qr;
    first = await AppStationSimulator.register({ qr: await code() }, { name: 'Lily' });
    apps.push(first);
    t.same(first.addressBook, [{ sipNumber: gwRecord.sip.number, name: 'Entrance Station1', type: 'door-phone', location: null, doorRelease: true, ixgStation: DOOR }], 'the first listing: the entrance station, with door release, reached through the gateway');
    second = await AppStationSimulator.register({ qr: await code() }, { name: 'Tom' });
    apps.push(second);
    t.match(second.addressBook, [{ ixgStation: DOOR, doorRelease: false }], 'the second listing has no door release');
    const listed = (await ok(api('GET', `/apartments/${flat.id}/app-stations`))).items;
    t.same(listed.map((a: any) => [a.name, a.ixgApp]), [['Lily', unit101.apps[0]!.number], ['Tom', unit101.apps[1]!.number]], 'each app station shows its listing');
    const full = await api('POST', `/apartments/${flat.id}/app-registrations`);
    t.equal(full.status, 409, 'the unit lists two apps: a third cannot connect');
    t.equal(full.body.error.code, 'apartment_full');
  });

  await t.test('the entrance station calls unit 101 through the gateway: both apps ring, the first answers and releases the door', async (t) => {
    const rings = Promise.all([once<IncomingCall>(first, 'incoming'), once<IncomingCall>(second, 'incoming')]);
    const calling = ixg.call(DOOR, '101', { timeoutMs: 30_000 });
    const [atFirst, atSecond] = await rings;
    t.match(atFirst, { from: gwRecord.sip.number, to: '101' }, "the first app rings, called from the gateway's number");
    t.equal(atSecond.callId, atFirst.callId, 'one call rings both apps');
    const secondStops = once(second, 'ended');
    await first.answer(atFirst.callId);
    const call = await calling;
    await secondStops;
    const listed = await waitFor(() => api('GET', `/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'answered');
    t.match(listed.body.items[0], { callId: call.callId, caller: gwRecord.sip.number, dialled: '101', apartmentId: flat.id, answeredBy: first.sipNumber, ixgStation: DOOR }, 'the call is recorded for the station');

    const released = once<IxgDoorRelease>(ixg, 'door-event-published');
    await first.sendDtmf('#');
    t.match(await released, { callId: call.callId, station: DOOR, by: first.sipNumber }, 'the cloud let the gateway release the door for the app');
    const events = await waitFor(() => api('GET', `/sites/${site.id}/door-events`), (r) => r.body.items?.length === 1);
    t.match(events.body.items[0], { mac: GW, ixgStation: DOOR, method: 'dtmf', byStation: first.sipNumber, callId: call.callId, verified: { call: true, by: true } }, 'the door log has it, verified against the call');
    await first.hangup();
  });

  await t.test('the second app answers the next call: its door release is refused, nothing is logged', async (t) => {
    const rings = Promise.all([once<IncomingCall>(first, 'incoming'), once<IncomingCall>(second, 'incoming')]);
    const calling = ixg.call(DOOR, '101', { timeoutMs: 30_000 });
    const [, atSecond] = await rings;
    await second.answer(atSecond.callId);
    const call = await calling;
    const refused = once<{ status: number; body: any }>(ixg, 'door-release-refused');
    await second.sendDtmf('#');
    const answer = await refused;
    t.equal(answer.status, 403);
    t.equal(answer.body.error.code, 'door_release_not_allowed');
    t.match(answer.body.error.message, /no door release for station/);
    t.equal(ixg.releases.length, 1, 'no second release');
    await second.hangup();
    await waitFor(() => api('GET', `/sites/${site.id}/calls`), (r) => r.body.items?.find((c: any) => c.callId === call.callId)?.outcome === 'completed');
    const asked = await ixg.askRelease(call.callId, DOOR);
    t.equal(asked.status, 403, 'after the call ended nobody may release the door by it');
    t.equal((await api('GET', `/sites/${site.id}/door-events`)).body.items.length, 1, 'the door log still has one event');
  });

  await t.test("the gateway's calls name an uploaded station and a unit of its site", async (t) => {
    const noStation = await gateway.call('101', { timeoutMs: 10_000 }).catch((e: { status?: number }) => e);
    t.equal((noStation as { status?: number }).status, 400, 'a call without X-IXG-Station is refused');
    t.equal(((await ixg.call('9999', '101', { timeoutMs: 10_000 }).catch((e) => e)) as { status?: number }).status, 404, 'an unknown station');
    t.equal(((await ixg.call(DOOR, '555', { timeoutMs: 10_000 }).catch((e) => e)) as { status?: number }).status, 404, 'an unknown unit');
    t.equal(((await ixg.call(DOOR, '101', { building: '07', timeoutMs: 10_000 }).catch((e) => e)) as { status?: number }).status, 404, 'a unit of another building');
    t.equal(((await ixg.call(DOOR, '102', { timeoutMs: 10_000 }).catch((e) => e)) as { status?: number }).status, 480, 'a unit without apps: nobody to ring');
    const refusedCall = await first.call(gwRecord.sip.number, { timeoutMs: 10_000 }).catch((e) => e);
    t.equal((refusedCall as { status?: number }).status, 403, "an app dialling the gateway's number reaches no IXG station");
  });

  await t.test('who may ask for a door release: the gateway alone, with its own key', async (t) => {
    const body = JSON.stringify({ callId: 'x@y', station: DOOR });
    const post = (headers: Record<string, string>) => fetch(`${svc.httpUrl}/ixg/${GW}/door-release`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
    t.equal((await post({})).status, 401, 'anonymous');
    t.equal((await post({ authorization: `Bearer ${alice.token}` })).status, 401, "the installer's token is no device credential");
    const pm = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@ixg-calls.test', siteIds: [site.id] }), 201);
    t.equal((await post({ authorization: `Bearer ${pm.token.token}` })).status, 401, "nor is the site's property manager's");
    t.equal((await post({ authorization: `Basic ${Buffer.from(`${GW}:wrong`).toString('base64')}` })).status, 401, 'a wrong device key');
    t.equal((await post({ authorization: `Basic ${Buffer.from(`${first.sipNumber}:x`).toString('base64')}` })).status, 401, "an app's credentials");
    const BOB_GW = '0C1130000002';
    await svc.addDevice(bob.token, BOB_GW, { type: 'ixgw', name: "Bob's gateway" });
    const bobs = new IxgGatewaySimulator({ opts: { mac: BOB_GW }, key: deriveDeviceKey(FACTORY_SECRET, BOB_GW), call: () => Promise.reject(new Error('no SIP')), publish: async () => {}, on: () => 0, off: () => 0 }, svc.httpUrl);
    const [lastCall] = (await ok(api('GET', `/sites/${site.id}/calls`))).items;
    const other = await bobs.askRelease(lastCall.callId, DOOR);
    t.equal(other.status, 403, "another installer's gateway cannot release doors by Alice's calls");
    t.equal(other.body.error.code, 'door_release_not_allowed');
    const malformed = await ixg.askRelease('x', 'not-a-station');
    t.equal(malformed.status, 400);
  });

  await t.test('an app refreshes its address book with its SIP credentials; a re-upload that drops its listing removes it', async (t) => {
    const book = (user: string, password: string) => fetch(`${svc.httpUrl}/api/v1/app/address-book`, { headers: { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` } });
    const mine = await book(first.sipNumber, first.registration.sip.password);
    t.equal(mine.status, 200);
    t.same(((await mine.json()) as any).addressBook, first.addressBook, "the app's own address book");
    t.equal((await book(first.sipNumber, second.registration.sip.password)).status, 401, "another app's password");
    t.equal((await fetch(`${svc.httpUrl}/api/v1/app/address-book`)).status, 401, 'anonymous');
    t.equal((await fetch(`${svc.httpUrl}/api/v1/app/address-book`, { headers: { authorization: `Bearer ${alice.token}` } })).status, 401, "an installer's token");
    t.equal((await book(GW, deriveDeviceKey(FACTORY_SECRET, GW))).status, 401, "a device's credentials");

    const changed = structuredClone(doc);
    changed.buildings[0]!.units[1]!.apps.pop();
    changed.buildings[0]!.units[0]!.stations[0]!.name = 'Main Entrance';
    const res = await uploadIxgSite(svc.httpUrl, GW, deriveDeviceKey(FACTORY_SECRET, GW), changed);
    t.equal(res.status, 200);
    t.equal(res.body.appStationsRemoved, 1, "the second app's listing is gone: its station goes");
    t.equal((await book(second.sipNumber, second.registration.sip.password)).status, 401, 'its credentials stop working at once');
    const refreshed = (await (await book(first.sipNumber, first.registration.sip.password)).json()) as any;
    t.match(refreshed.addressBook, [{ name: 'Main Entrance', ixgStation: DOOR, doorRelease: true }], "the first app's address book follows the upload");
    t.same((await ok(api('GET', `/apartments/${flat.id}/app-stations`))).items.map((a: any) => a.name), ['Lily']);
  });
}
