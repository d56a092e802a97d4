import net from 'node:net';
import t from 'tap';
import { startTestService } from '../helpers/service.js';

// MQTT_CONNECT_TIMEOUT_MS: a connection that sends no CONNECT is closed that long after it was accepted.
// The default (30 s) would outlast this test's own timeout, so the close shows the setting is applied.

t.test('a connection that sends no CONNECT is closed after MQTT_CONNECT_TIMEOUT_MS', { timeout: 20_000 }, async (t) => {
  const svc = await startTestService(t, { MQTT_CONNECT_TIMEOUT_MS: '1000' });
  const socket = net.connect({ host: '127.0.0.1', port: svc.service.ports.mqtt });
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  const received: Buffer[] = [];
  socket.on('data', (d) => received.push(d));
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  t.same(Buffer.concat(received), Buffer.alloc(0), 'closed without an answer');
});

t.test('MQTT_CONNECT_TIMEOUT_MS out of its range is refused at start', async (t) => {
  await t.rejects(startTestService(t, { MQTT_CONNECT_TIMEOUT_MS: '10' }), /MQTT_CONNECT_TIMEOUT_MS/);
});
