import t, { type Test } from 'tap';
import { SipStation } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { SIP_ON_FREE_PORTS, startTestService, waitFor } from '../helpers/service.js';

// Tenants leave (issue 17, item 4): an apartment reset, or its licence released, takes the old tenants'
// apps with it: their SIP accounts fail at once, their address book is gone, their unredeemed codes no
// longer redeem, and the answer says so.
if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const sip = svc.service.sip!;
  const alice = await svc.createInstaller('Alice');
  const bob = await svc.createInstaller('Bob');
  const call = (token: string) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, body });
  const A = call(alice.token);
  const B = call(bob.token);
  const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
    const r = await res;
    if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const redeem = (code: string) => svc.api('POST', `/api/v1/app-registrations/${code}`, { token: null, body: { name: 'Phone' } });

  const stations: SipStation[] = [];
  t.teardown(() => Promise.all(stations.map((s) => s.stop().catch(() => {}))));
  const station = (account: { number: string; password: string }, transport: 'udp' | 'ws') => {
    const s = new SipStation({ ...account, domain: sip.domain, server: { host: '127.0.0.1', port: transport === 'ws' ? sip.ports.ws : sip.ports.udp, transport } });
    stations.push(s);
    return s;
  };
  const statusOf = (p: Promise<unknown>) => p.then(() => 0, (err: { status?: number }) => err.status ?? -1);

  const site = await ok(A('POST', '/sites', { kind: 'community', name: 'Leaving', timeZone: 'UTC' }), 201);
  const building = await ok(A('POST', `/sites/${site.id}/buildings`, { name: 'A' }), 201);
  const flat = await ok(A('POST', `/buildings/${building.id}/apartments`, { number: '101' }), 201);
  const other = await ok(A('POST', `/buildings/${building.id}/apartments`, { number: '102' }), 201);
  const door = await svc.addDevice(alice.token, '0C1117000001', { type: 0, name: 'Entrance', relays: [{ name: 'Main door', dtmf: '#', enabled: true }] });
  await ok(A('PATCH', `/devices/${door.mac}`, { siteId: site.id, buildingId: building.id }));
  const doorPhone = station({ number: door.sip.number, password: door.sip.password }, 'udp');
  doorPhone.autoAnswer = { ringMs: 0 };
  await doorPhone.start();
  if ((await doorPhone.register()).status !== 200) throw new Error('the door phone does not register');
  await ok(A('PUT', `/sites/${site.id}/app-licences`, { units: 2 }));

  /** An app of the apartment, registered by code and over SIP. */
  async function app(t: Test, apartmentId: string) {
    const code = (await ok(A('POST', `/apartments/${apartmentId}/app-registrations`), 201)).code as string;
    const exchanged = await redeem(code);
    t.equal(exchanged.status, 201);
    t.match(exchanged.body.addressBook, [{ sipNumber: door.sip.number, doorRelease: true }], 'its address book has door release');
    const account = { number: exchanged.body.sip.username as string, password: exchanged.body.sip.password as string };
    const phone = station(account, 'ws');
    await phone.start();
    t.equal((await phone.register()).status, 200, 'the app registers');
    await waitFor(() => A('GET', `/apartments/${apartmentId}/app-stations`), (r) => r.body.items?.some((s: { sipNumber: string; sipStatus: string }) => s.sipNumber === account.number && s.sipStatus === 'registered'));
    return { account, phone };
  }

  t.test('an apartment reset removes its app stations and revokes its registration codes', async (t) => {
    await ok(A('POST', `/apartments/${flat.id}/residents`, { firstName: 'Old', lastName: 'Tenant' }), 201);
    const { account, phone } = await app(t, flat.id);
    const opened = await phone.call(door.sip.number);
    await opened.hangup();
    t.pass('before the reset, the app calls the door phone');
    const pending = (await ok(A('POST', `/apartments/${flat.id}/app-registrations`), 201)).code as string;

    t.equal((await B('POST', `/apartments/${flat.id}/reset`)).status, 404, "another installer cannot reset Alice's apartment");
    t.equal((await A('GET', `/apartments/${flat.id}/app-stations`)).body.items.length, 1, 'which left everything');

    const reset = await A('POST', `/apartments/${flat.id}/reset`);
    t.equal(reset.status, 200);
    t.same(reset.body, { residentsRemoved: 1, credentialsRemoved: 0, appStationsRemoved: 1, codesRevoked: 1 }, 'the answer counts what went');
    t.same((await A('GET', `/apartments/${flat.id}/app-stations`)).body.items, [], 'the app station is no longer listed');

    const again = station(account, 'ws');
    await again.start();
    t.equal((await again.register()).status, 401, 'its SIP account no longer registers');
    t.equal(await statusOf(phone.call(door.sip.number)), 407, 'nor calls the door phone: its credentials are refused at once');
    t.equal(await svc.service.appStations.addressBook(account.number), null, 'it has no address book (no door release) any more');
    const late = await redeem(pending);
    t.equal(late.status, 404, 'a code made before the reset no longer redeems');
    t.equal(late.body.error.code, 'registration_code_invalid');

    const audit = await svc.sql(`select details from write_audit where action = 'apartment.reset' and subject = $1`, [flat.id]);
    t.same(audit, [{ details: { residents: 1, credentials: 0, appStations: 1, codes: 1 } }], 'the audit row names what went, written with the reset');

    const fresh = await app(t, flat.id);
    t.ok(fresh.account.number !== account.number, 'the new tenants register apps as before');
  });

  t.test('a code redeemed or made while the apartment is reset: the reset removes it, or it came after, and the answer says which', async (t) => {
    await ok(A('POST', `/apartments/${flat.id}/reset`)); // the first test's new tenants leave too
    const statuses = new Set<number>();
    for (let round = 0; round < 8; round++) {
      const code = (await ok(A('POST', `/apartments/${flat.id}/app-registrations`), 201)).code as string;
      const [redeemed, reset, made] = await Promise.all([redeem(code), A('POST', `/apartments/${flat.id}/reset`), A('POST', `/apartments/${flat.id}/app-registrations`)]);
      for (const r of [redeemed, reset, made]) statuses.add(r.status);
      t.equal(reset.status, 200, `round ${round}: the reset succeeds`);
      const before = redeemed.status === 201;
      t.ok(before ? reset.body.appStationsRemoved === 1 : redeemed.status === 404, 'redeemed before the reset and removed by it, or refused after it');
      t.same((await A('GET', `/apartments/${flat.id}/app-stations`)).body.items, [], 'no app station outlives the reset');
      // The code made meanwhile: revoked (counted) or made after the reset (still redeems).
      const madeRevoked = reset.body.codesRevoked - (before ? 0 : 1);
      const late = await redeem(made.body.code);
      t.equal(late.status, madeRevoked === 1 ? 404 : 201, `the code made meanwhile was ${madeRevoked === 1 ? 'revoked' : 'made after the reset'}`);
      await ok(A('POST', `/apartments/${flat.id}/reset`), 200);
    }
    t.notOk([...statuses].some((s) => s >= 500), `no request failed (${[...statuses].join(', ')})`);
    await app(t, flat.id); // the apartment has its app again for the licence test
  });

  t.test("a licence released: the apartment's app stations and codes go; without naming it, lowering is refused", async (t) => {
    const { account } = await app(t, other.id);
    const pending = (await ok(A('POST', `/apartments/${other.id}/app-registrations`), 201)).code as string;
    const licences = (await ok(A('GET', `/sites/${site.id}/app-licences`))) as { units: number; used: number };
    t.same(licences, { units: 2, used: 2 });

    const refused = await A('PUT', `/sites/${site.id}/app-licences`, { units: 1 });
    t.equal(refused.body.error?.code, 'licence_in_use', 'lowering below the units with apps, naming none, is refused');
    const foreign = await ok(B('POST', '/sites', { kind: 'community', name: 'Bob', timeZone: 'UTC' }), 201);
    const foreignFlat = await ok(B('POST', `/buildings/${(await ok(B('POST', `/sites/${foreign.id}/buildings`, { name: 'X' }), 201)).id}/apartments`, { number: '1' }), 201);
    const wrong = await A('PUT', `/sites/${site.id}/app-licences`, { units: 1, release: [other.id, foreignFlat.id] });
    t.equal(wrong.status, 400);
    t.equal(wrong.body.error.code, 'apartment_not_found', "another installer's apartment is not released");
    t.equal((await A('GET', `/apartments/${other.id}/app-stations`)).body.items.length, 1, 'and the refused request removed nothing');

    const released = await A('PUT', `/sites/${site.id}/app-licences`, { units: 1, release: [other.id] });
    t.equal(released.status, 200);
    t.same(released.body, { units: 1, used: 1, appStationsRemoved: 1, codesRevoked: 1 });
    t.same((await A('GET', `/apartments/${other.id}/app-stations`)).body.items, []);
    const again = station(account, 'ws');
    await again.start();
    t.equal((await again.register()).status, 401, "the released apartment's app no longer registers");
    t.equal((await redeem(pending)).status, 404, 'nor does its code redeem');
  });
}
