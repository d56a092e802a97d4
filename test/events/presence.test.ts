import t from 'tap';
import { eventsOut } from '../../src/roles/engine.js';
import type { SimulatedDevice } from '../../simulators/device-simulator.js';
import { startTestService, waitFor } from '../helpers/service.js';

// Issue 19, "Presence without flapping": a device that keeps dropping gets one device.flapping and a
// summary instead of a storm; a site that goes dark at once gets one site.outage beside the device.offline
// of each of its devices. The follower's clock is moved by the test; nothing waits on wall-clock margins.

const svc = await startTestService(t, { PRESENCE_FLAP_COUNT: '3', PRESENCE_FLAP_MINUTES: '10' });
const alice = await svc.createInstaller('Alice');
const api = (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: alice.token, ...(body === undefined ? {} : { body }) });
const presence = eventsOut!.presence;
let clock = Date.now();
presence.now = () => new Date(clock);
const site = (await api('POST', '/sites', { kind: 'community', name: 'Dark', timeZone: 'Europe/Berlin' })).body;
const told = async (mac?: string) =>
  (await svc.sql<{ type: string; mac: string | null; data: any }>(`SELECT type, mac, data FROM outbound_events WHERE type IN ('device.online', 'device.offline', 'device.flapping', 'site.outage') ${mac ? 'AND mac = $1' : ''} ORDER BY id`, mac ? [mac] : []));
/** Waits until the presence follower has the device as `online`. */
const settled = async (mac: string, online: boolean) => {
  await waitFor(() => svc.sql<{ online: boolean }>('SELECT online FROM presence_state WHERE mac = $1', [mac]), (rows) => rows[0]?.online === online);
};

t.test('a flapping device: one device.flapping, nothing while it flaps, then a summary', async (t) => {
  const MAC = '0C1119400001';
  await svc.addDevice(alice.token, MAC);
  await api('PATCH', `/devices/${MAC}`, { siteId: site.id });
  let device: SimulatedDevice | null = null;
  for (let i = 0; i < 5; i++) {
    device = svc.device(MAC);
    device.start();
    await settled(MAC, true);
    await device.stop(false);
    await settled(MAC, false);
  }
  await presence.pass();
  const events = await told(MAC);
  t.same(events.map((e) => e.type), ['device.online', 'device.flapping'], 'online once, then one device.flapping: no offline/online pairs');
  t.match(events[1]!.data, { state: 'started', transitions: 4 });
  clock += 11 * 60_000;
  await presence.pass();
  const after = await told(MAC);
  t.same(after.map((e) => e.type), ['device.online', 'device.flapping', 'device.flapping', 'device.offline'], 'a summary once it calmed, then where it is now');
  t.match(after[2]!.data, { state: 'ended', online: false });
});

t.test('a site goes dark at once: every device.offline after the grace, and one site.outage', async (t) => {
  const macs = Array.from({ length: 12 }, (_, i) => `0C11194001${String(i).padStart(2, '0')}`);
  const devices: SimulatedDevice[] = [];
  for (const mac of macs) {
    await svc.addDevice(alice.token, mac);
    await api('PATCH', `/devices/${mac}`, { siteId: site.id });
    const d = svc.device(mac);
    d.start();
    devices.push(d);
  }
  for (const mac of macs) await settled(mac, true);
  await Promise.all(devices.map((d) => d.stop(false)));
  for (const mac of macs) await settled(mac, false);
  await presence.pass();
  t.equal((await told()).filter((e) => e.type === 'device.offline' && macs.includes(e.mac!)).length, 0, 'nothing within the grace');
  clock += 61_000;
  await presence.pass();
  const events = await told();
  t.equal(events.filter((e) => e.type === 'device.offline' && macs.includes(e.mac!)).length, 12, 'each device once');
  const outages = events.filter((e) => e.type === 'site.outage');
  t.equal(outages.length, 1, 'one site.outage');
  t.match(outages[0]!.data, { siteId: site.id, offline: 12 });
  await presence.pass();
  t.equal((await told()).filter((e) => e.type === 'site.outage').length, 1, 'not again');
});
