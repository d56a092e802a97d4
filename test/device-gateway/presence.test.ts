import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, startTestService, waitFor } from '../helpers/service.js';
import { RawMqtt } from '../helpers/raw-mqtt.js';

const svc = await startTestService(t);
const installer = await svc.createInstaller();
const MAC = '0C11050B9814';
await svc.addDevice(installer.token, MAC);
const status = async () => (await svc.api('GET', `/api/v1/devices/${MAC}`, { token: installer.token })).body;

t.test('a second connection with the same MAC takes over and closes the first; the device stays online', async (t) => {
  const first = svc.device(MAC);
  first.start();
  await once(first, 'online');
  await waitFor(status, (d) => d.status === 'online');
  const firstGone = once(first, 'offline');
  const second = svc.device(MAC, { firmware: '29.30.10.200' });
  second.start();
  await once(second, 'online');
  await firstGone;
  t.pass('first session closed');
  await new Promise((r) => setTimeout(r, 200)); // more than one presence flush
  const d = await waitFor(status, (x) => x.firmware === '29.30.10.200');
  t.equal(d.status, 'online', 'the takeover does not mark the device offline');
  t.equal(svc.service.gateway.connectedDevices, 1);
  await second.stop();
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('a device that goes silent is offline after 1.5 × keepalive', async (t) => {
  const raw = await RawMqtt.connect(svc.service.ports.mqtt);
  raw.send(raw.connectPacket(MAC, MAC, deriveDeviceKey(FACTORY_SECRET, MAC), 1));
  t.equal((await raw.next('connack'))?.returnCode, 0);
  t.equal((await waitFor(status, (x) => x.status === 'online')).status, 'online');
  // No PINGREQ is ever sent: the broker must give up after 1.5 s.
  t.ok(await raw.waitClosed(4000), 'the gateway closed the silent connection');
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('a dropped connection (power cut) is offline too', async (t) => {
  const device = svc.device(MAC);
  device.start();
  await once(device, 'online');
  await waitFor(status, (x) => x.status === 'online');
  await device.stop(false);
  t.equal((await waitFor(status, (x) => x.status === 'offline')).status, 'offline');
});

t.test('devices reconnect by themselves with backoff after the session is cut', async (t) => {
  const device = svc.device(MAC, { reconnect: { minMs: 50, maxMs: 200 } });
  device.start();
  await once(device, 'online');
  const back = new Promise<void>((resolve) => device.once('offline', () => device.once('online', () => resolve())));
  svc.service.gateway.disconnect(MAC, 'test');
  await back;
  t.equal(device.state, 'online', 'reconnected');
  await device.stop();
});
