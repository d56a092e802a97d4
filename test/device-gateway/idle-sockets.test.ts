import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import mqttPacket from 'mqtt-packet';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, startTestService, waitFor } from '../helpers/service.js';

// Issue 17: 2,000 sockets from one address that open and say nothing, on the MQTT and on the MQTTS port,
// must not keep a device on another address from its CONNACK 0; each idle socket is closed within the
// CONNECT (or TLS handshake) timeout. 8,000 open files in this process (both ends), under its 20,000.

const certDir = mkdtempSync(join(tmpdir(), 'icloud-tls-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });

const IDLE = 2000;
const MAC = '0C1108170101';

/** IDLE sockets from 127.0.0.1 that connect and never send a byte. */
async function idleSockets(t: { teardown(fn: () => unknown): void }, port: number) {
  const sockets: net.Socket[] = [];
  const state = { closed: 0, get open() { return IDLE - state.closed; } };
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  await Promise.all(
    Array.from({ length: IDLE }, () => new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
      sockets.push(s);
      s.on('error', () => {});
      s.once('close', () => (state.closed++, resolve()));
      s.once('connect', () => resolve());
    })),
  );
  return state;
}

/** A device's CONNECT from 127.0.0.2 over `socket`: the CONNACK's return code. */
function connack(socket: net.Socket): Promise<number> {
  return new Promise((resolve, reject) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p) => p.cmd === 'connack' && (resolve((p as { returnCode?: number }).returnCode ?? -1), socket.destroy()));
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('closed without a CONNACK')));
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: MAC, keepalive: 60, username: MAC, password: Buffer.from(deriveDeviceKey(FACTORY_SECRET, MAC)) }));
  });
}

t.test('2,000 idle sockets from one address: a device on another gets CONNACK 0 over MQTT and MQTTS, the idle ones are closed', async (t) => {
  // The CONNECT timeout this test was written for (the default is 30 s since a storm's devices timed out).
  const svc = await startTestService(t, { TLS_CERT_FILE: join(certDir, 'cert.pem'), TLS_KEY_FILE: join(certDir, 'key.pem'), MQTTS_PORT: '0', MQTT_CONNECT_TIMEOUT_MS: '10000' });
  const installer = await svc.createInstaller();
  await svc.addDevice(installer.token, MAC);
  const { mqtt, mqtts } = svc.service.ports;

  const plain = await idleSockets(t, mqtt);
  const code = await connack(await new Promise<net.Socket>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: mqtt, localAddress: '127.0.0.2' }, () => resolve(s));
  }));
  t.equal(code, 0, 'CONNACK 0 over MQTT');
  t.ok(plain.open > 0, `…while idle sockets are still open (${plain.open})`);

  const secure = await idleSockets(t, mqtts!);
  const tlsCode = await connack(await new Promise<net.Socket>((resolve) => {
    const s = tls.connect({ socket: net.connect({ host: '127.0.0.1', port: mqtts!, localAddress: '127.0.0.2' }), rejectUnauthorized: false }, () => resolve(s));
  }));
  t.equal(tlsCode, 0, 'CONNACK 0 over MQTTS');
  t.ok(secure.open > 0, `…while idle sockets are still open (${secure.open})`);

  // Nothing holds a silent socket for long: the CONNECT timeout and the TLS handshake timeout end them.
  await waitFor(() => plain.closed + secure.closed, (n) => n === 2 * IDLE);
  t.pass('every idle socket was closed by the gateway');
});
