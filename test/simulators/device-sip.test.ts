import t from 'tap';
import type { DoorOpening, SimulatedDevice, SipRegistration } from '../../simulators/device-simulator.js';
import type { ActiveCall, IncomingCall } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { once, startTestService, waitFor, SIP_ON_FREE_PORTS } from '../helpers/service.js';

// The device simulator's SIP side against the service's own Kamailio: it registers with the account its
// configuration carries, auto-answers as a monitor, opens relays for their DTMF codes (several digits too),
// registers again after a reboot, unregisters when it stops, and stays off SIP unless asked.

if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else await run();

async function run() {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const { token } = await svc.createInstaller('Sim');
  const api = (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, body });
  const ok = async (res: Promise<{ status: number; body: any }>, status = 201) => {
    const r = await res;
    if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  const registered = (device: SimulatedDevice) => once<SipRegistration>(device, 'sip-registered');

  const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Sim', timeZone: 'UTC' }));
  const building = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'A' }));
  const flat = await ok(api('POST', `/buildings/${building.id}/apartments`, { number: '102' }));
  const relays = [
    { name: 'Gate', dtmf: '#', enabled: true },
    { name: 'Garage', dtmf: '12', enabled: true },
    { name: 'Cellar', dtmf: '9', enabled: false },
  ];
  const doorRecord = await svc.addDevice(token, '0C1121000001', { type: 0, relays });
  const monitorRecord = await svc.addDevice(token, '0C1121000002', { type: 2 });
  const plainRecord = await svc.addDevice(token, '0C1121000003', { type: 2 });
  await ok(api('PATCH', '/devices/0C1121000001', { siteId: site.id, buildingId: building.id }), 200);
  await ok(api('PATCH', '/devices/0C1121000002', { siteId: site.id, apartmentId: flat.id }), 200);

  const door = svc.device('0C1121000001', { reconnect: { minMs: 50, maxMs: 200 }, sip: { enabled: true }, behaviour: { rebootDelayMs: 50 } });
  const monitor = svc.device('0C1121000002', { reconnect: { minMs: 50, maxMs: 200 }, sip: { enabled: true, autoAnswer: { ringMs: 20 } } });
  const plain = svc.device('0C1121000003', { reconnect: { minMs: 50, maxMs: 200 } });
  const up = [registered(door), registered(monitor)];
  door.start();
  monitor.start();
  plain.start();
  await Promise.all(up);

  t.test('a device without the sip option stays off SIP', async (t) => {
    await waitFor(() => plain.configHash, Boolean);
    t.ok(plain.config.get('Config.Account1.SIP.Server'), 'its configuration has a SIP server');
    t.equal(plain.sipStation, null, 'but it starts no SIP station');
    t.equal((await ok(api('GET', `/devices/${plainRecord.mac}`), 200)).sipStatus, 'unregistered');
  });

  t.test('the door phone calls 102: the monitor answers by itself and opens relay 2 with the code 12; a disabled relay stays shut', async (t) => {
    const answered = once<ActiveCall>(monitor, 'sip-answered');
    const call = await door.call('102', { timeoutMs: 30_000 });
    const atMonitor = await answered;
    t.equal(atMonitor.callId, call.callId);
    const opened = once<DoorOpening>(door, 'door-event-published');
    await atMonitor.sendDtmf('9');
    await atMonitor.sendDtmf('12');
    t.match(await opened, { relay: 2, name: 'Garage', by: monitorRecord.sip.number, callId: call.callId });
    t.same(door.doorOpenings.map((o) => o.relay), [2], 'relay 3 (disabled, code 9) stayed shut');
    const events = await waitFor(() => api('GET', `/sites/${site.id}/door-events`), (r) => r.body.items?.length === 1);
    t.match(events.body.items[0], { relay: 2, method: 'dtmf', byStation: monitorRecord.sip.number, callId: call.callId });
    const ended = once(monitor, 'sip-ended');
    await call.hangup();
    await ended;
  });

  t.test('the monitor calls the door phone by number; the door phone answers; # opens relay 1 for the monitor', async (t) => {
    const rings = once<IncomingCall>(door, 'sip-incoming');
    const calling = monitor.call(doorRecord.sip.number, { timeoutMs: 30_000 });
    const incoming = await rings;
    t.equal(incoming.from, monitorRecord.sip.number);
    await door.answer(incoming.callId);
    const call = await calling;
    const opened = once<DoorOpening>(door, 'door-opened');
    await call.sendDtmf('#');
    t.match(await opened, { relay: 1, by: monitorRecord.sip.number, callId: call.callId });
    await call.hangup();
  });

  t.test('a reboot registers again', async (t) => {
    const again = registered(door);
    const before = door.sipStation;
    await door.reboot();
    t.match(await again, { status: 200, transport: 'udp' });
    t.not(door.sipStation, before, 'with a new station');
  });

  t.test('stopping the device unregisters it', async (t) => {
    await waitFor(() => api('GET', `/devices/${monitorRecord.mac}`), (r) => r.body.sipStatus === 'registered');
    await monitor.stop();
    t.equal(monitor.sipStation, null);
    const view = await waitFor(() => api('GET', `/devices/${monitorRecord.mac}`), (r) => r.body.sipStatus === 'unregistered');
    t.ok(view.body.sipLastRegisteredAt, 'the last registration stays known');
  });
}
