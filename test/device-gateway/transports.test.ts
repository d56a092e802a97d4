import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { once, startTestService, waitFor } from '../helpers/service.js';

// A self-signed certificate for MQTT over TLS, made with the machine's openssl.
const certDir = mkdtempSync(join(tmpdir(), 'icloud-tls-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });

const svc = await startTestService(t, { TLS_CERT_FILE: join(certDir, 'cert.pem'), TLS_KEY_FILE: join(certDir, 'key.pem'), MQTTS_PORT: '0' });
const installer = await svc.createInstaller();
await svc.addDevice(installer.token, '0C11050B9814');
await svc.addDevice(installer.token, '0C11050B9815');

t.test('devices connect over WebSocket at /mqtt on the HTTP port', async (t) => {
  const device = svc.device('0C11050B9814', { url: `ws://127.0.0.1:${svc.service.ports.http}/mqtt` });
  device.start();
  await once(device, 'online');
  const d = await waitFor(
    () => svc.api('GET', '/api/v1/devices/0C11050B9814', { token: installer.token }),
    (r) => r.body.status === 'online' && r.body.model === 'R29',
  );
  t.equal(d.body.status, 'online');
  await device.stop();
});

t.test('devices connect over TLS when a certificate is configured', async (t) => {
  t.ok(svc.service.ports.mqtts, 'TLS listener is up');
  const device = svc.device('0C11050B9815', { url: `mqtts://127.0.0.1:${svc.service.ports.mqtts}`, ca: readFileSync(join(certDir, 'cert.pem')) });
  device.start();
  await once(device, 'online');
  const d = await waitFor(
    () => svc.api('GET', '/api/v1/devices/0C11050B9815', { token: installer.token }),
    (r) => r.body.status === 'online',
  );
  t.equal(d.body.status, 'online');
  await device.stop();
});

t.test('an unregistered device is refused over WebSocket as over TCP', async (t) => {
  const device = svc.device('DEADBEEF0002', { url: `ws://127.0.0.1:${svc.service.ports.http}/mqtt` });
  device.start();
  t.equal(await once(device, 'refused'), 5);
});
