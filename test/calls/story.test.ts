import t from 'tap';
import { AppStationSimulator } from '../../simulators/app-station.js';
import type { DoorOpening, SimulatedDevice, SipRegistration } from '../../simulators/device-simulator.js';
import type { IncomingCall } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { once, startTestService, waitFor, SIP_ON_FREE_PORTS } from '../helpers/service.js';

// The calls story end to end (issue 11, "Done when"): an installer sets up a site, a door phone and an
// indoor monitor come online, are provisioned and register over SIP; a resident's app registers by code;
// the door phone calls the apartment, monitor and app ring, the app answers and opens the door by DTMF;
// the cloud lists the call and the door event.

if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const sip = svc.service.sip!;
  const installer = await svc.createInstaller('Story');
  const api = {
    get: (path: string) => svc.api('GET', `/api/v1${path}`, { token: installer.token }),
    post: (path: string, body: unknown = {}) => svc.api('POST', `/api/v1${path}`, { token: installer.token, body }),
    put: (path: string, body: unknown) => svc.api('PUT', `/api/v1${path}`, { token: installer.token, body }),
    patch: (path: string, body: unknown) => svc.api('PATCH', `/api/v1${path}`, { token: installer.token, body }),
  };
  const ok = async (res: Promise<{ status: number; body: any }>, status = 201) => {
    const r = await res;
    if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  /** The next 'sip-registered' of a device that satisfies `accept` (listen before causing it). */
  const registration = (device: SimulatedDevice, accept: (r: SipRegistration) => boolean) =>
    new Promise<SipRegistration>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${device.opts.mac}: no matching SIP registration`)), 60_000);
      const seen = (r: SipRegistration) => {
        if (!accept(r)) return;
        clearTimeout(timer);
        device.off('sip-registered', seen);
        resolve(r);
      };
      device.on('sip-registered', seen);
    });

  const apps: AppStationSimulator[] = [];
  t.teardown(() => Promise.all(apps.map((a) => a.stop().catch(() => {}))));

  // The installer's site: community "Story", building A, apartment 101 (group ringing), one app licence.
  const site = await ok(api.post('/sites', { kind: 'community', name: 'Story', timeZone: 'Europe/Berlin' }));
  const building = await ok(api.post(`/sites/${site.id}/buildings`, { name: 'A' }));
  const flat = await ok(api.post(`/buildings/${building.id}/apartments`, { number: '101', contactPreference: { mode: 'group' } }));
  await ok(api.put(`/sites/${site.id}/app-licences`, { units: 1 }), 200);

  // A door phone with one relay, 'Gate', released by DTMF '#', at the building; a monitor in 101.
  const DOOR = '0C1120000001';
  const MONITOR = '0C1120000002';
  const doorRecord = await svc.addDevice(installer.token, DOOR, { type: 0, name: 'Entrance A', relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
  const monitorRecord = await svc.addDevice(installer.token, MONITOR, { type: 2, name: 'Monitor 101' });
  await ok(api.patch(`/devices/${DOOR}`, { siteId: site.id, buildingId: building.id }), 200);
  await ok(api.patch(`/devices/${MONITOR}`, { siteId: site.id, apartmentId: flat.id }), 200);
  const doorNumber: string = doorRecord.sip.number;
  const monitorNumber: string = monitorRecord.sip.number;

  const door = svc.device(DOOR, { model: 'R29', reconnect: { minMs: 50, maxMs: 200 }, sip: { enabled: true } });
  const monitor = svc.device(MONITOR, { model: 'IT83', reconnect: { minMs: 50, maxMs: 200 }, sip: { enabled: true } });

  await t.test('both devices come online, get their configuration and register over SIP (UDP by default)', async (t) => {
    const registered = [registration(door, (r) => r.status === 200), registration(monitor, (r) => r.status === 200)];
    door.start();
    monitor.start();
    const [doorReg, monitorReg] = await Promise.all(registered);
    t.match(doorReg, { number: doorNumber, transport: 'udp', port: sip.ports.udp, status: 200 }, 'the door phone registered over UDP');
    t.match(monitorReg, { number: monitorNumber, transport: 'udp', status: 200 }, 'the monitor registered over UDP');
    t.equal(door.config.get('Config.Account1.SIP.Server'), sip.host, 'its configuration named the SIP server');
    t.same(door.relays(), [{ relay: 1, name: 'Gate', dtmf: '#' }], "the door phone's configuration has the relay");
    const listed = await waitFor(
      () => api.get(`/devices?siteId=${site.id}`),
      (r) => r.body.items?.length === 2 && r.body.items.every((d: any) => d.sipStatus === 'registered' && d.sipLastRegisteredAt),
    );
    t.same(listed.body.items.map((d: any) => d.mac).sort(), [DOOR, MONITOR], 'the API lists both devices registered, with their last registration');
  });

  await t.test("changing the door phone's connect type to TCP moves its registration to TCP", async (t) => {
    const onTcp = registration(door, (r) => r.transport === 'tcp');
    const unregistered = once(door, 'sip-unregistered');
    const job = await ok(api.put(`/devices/${DOOR}/connect-type`, { connectType: 'tcp' }), 202);
    t.ok(job, 'the change is a job');
    await unregistered;
    t.pass('the old UDP registration was removed first');
    t.match(await onTcp, { transport: 'tcp', port: sip.ports.tcp, status: 200 }, 'it registered again, over TCP');
    t.equal(door.config.get('Config.Account1.SIP.TransType'), '1');
    const view = await waitFor(
      () => svc.sql<{ transport: string; expires_at: Date }>('select transport, expires_at from sip_registrations where sip_number = $1', [doorNumber]),
      (rows) => rows[0]?.transport === 'tcp' && rows[0].expires_at.getTime() > Date.now(),
    );
    t.equal(view[0]!.transport, 'tcp', 'Kamailio reported the registration over TCP');
    const device = await waitFor(() => api.get(`/devices/${DOOR}`), (r) => r.body.sipStatus === 'registered');
    t.ok(device.body.sipLastRegisteredAt, 'the API shows the device registered');
  });

  let app: AppStationSimulator;
  await t.test('an app registers by the code of its QR code and registers over WebSocket', async (t) => {
    const code = await ok(api.post(`/apartments/${flat.id}/app-registrations`));
    t.equal(code.qr.text, code.registrationUrl, 'the QR code holds the registration URL');
    app = await AppStationSimulator.register({ qr: code.qr }, { name: 'Lily' });
    apps.push(app);
    t.equal(app.server.transport, 'ws', 'over WebSocket');
    t.equal(app.server.port, sip.ports.ws);
    t.match(app.station, { name: 'Lily', apartmentId: flat.id, siteId: site.id });
    t.match(app.sipNumber, /^[0-9]{10}$/);
    t.match(app.addressBook, [{ sipNumber: doorNumber, type: 'door-phone', doorRelease: true }], 'the address book has the door phone, which can release the door');
    t.equal((await ok(api.get(`/sites/${site.id}/app-licences`), 200)).used, 1, 'the licence is in use');
  });

  await t.test('the door phone calls 101: monitor and app ring, the app answers and opens the gate with #', async (t) => {
    const monitorRings = once<IncomingCall>(monitor, 'sip-incoming');
    const appRings = once<IncomingCall>(app, 'incoming');
    const monitorStops = once<{ callId: string }>(monitor, 'sip-ended');
    const calling = door.call('101', { timeoutMs: 30_000 });
    const [atMonitor, atApp] = await Promise.all([monitorRings, appRings]);
    t.match(atMonitor, { from: doorNumber, to: '101' }, 'the monitor rings');
    t.match(atApp, { from: doorNumber, to: '101' }, 'the app rings');
    t.equal(atApp.callId, atMonitor.callId, 'one call, both branches');

    const listedRinging = await waitFor(() => api.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.callId === atApp.callId);
    t.match(listedRinging.body.items[0], { caller: doorNumber, dialled: '101', apartmentId: flat.id }, 'the call is recorded while it rings');

    await app.answer(atApp.callId);
    const call = await calling;
    t.equal(call.callId, atApp.callId, "the door phone's call is up");
    t.equal((await monitorStops).callId, call.callId, 'the monitor stops ringing once the app answered');
    t.equal(monitor.ringing.size, 0);

    const answered = await waitFor(() => api.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'answered');
    t.match(answered.body.items[0], { callId: call.callId, answeredBy: app.sipNumber, outcome: 'answered', endedAt: null }, 'the call is listed answered by the app');

    const opened = once<DoorOpening>(door, 'door-event-published');
    await app.sendDtmf('#');
    const opening = await opened;
    t.match(opening, { relay: 1, name: 'Gate', method: 'dtmf', by: app.sipNumber, callId: call.callId, published: true }, "relay 1 opened for the app's DTMF");
    t.equal(door.doorOpenings.length, 1, 'once');

    const events = await waitFor(() => api.get(`/sites/${site.id}/door-events`), (r) => r.body.items?.length === 1);
    t.match(events.body.items[0], { mac: DOOR, relay: 1, method: 'dtmf', byStation: app.sipNumber, callId: call.callId }, 'the door event is listed');
    t.same(events.body.items[0].verified, { relay: true, call: true, by: true, at: true }, 'and verified: the relay, the call, the app that answered it, the time');

    const ended = once(app, 'ended');
    await call.hangup();
    await ended;
    const completed = await waitFor(() => api.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'completed');
    t.match(completed.body.items[0], { callId: call.callId, answeredBy: app.sipNumber, outcome: 'completed' }, 'after the hangup the call is completed');
    t.ok(completed.body.items[0].answeredAt && completed.body.items[0].endedAt);
  });

  await t.test('a DTMF code no relay has opens nothing', async (t) => {
    const appRings = once<IncomingCall>(app, 'incoming');
    const calling = door.call('101', { timeoutMs: 30_000 });
    await app.answer((await appRings).callId);
    const call = await calling;
    // The door phone acknowledges every INFO, so the digits have arrived when sendDtmf resolves.
    const digits: string[] = [];
    const collect = (tone: { digit: string }) => digits.push(tone.digit);
    door.on('sip-dtmf', collect);
    await app.sendDtmf('123');
    door.off('sip-dtmf', collect);
    t.same(digits, ['1', '2', '3'], 'the digits arrived');
    t.equal(door.doorOpenings.length, 1, 'no relay opened');
    await call.hangup();
  });
}
