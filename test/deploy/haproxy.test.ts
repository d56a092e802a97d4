import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { freePort } from '../../src/infra/net.js';
import { SimulatedDevice, type SimulatedDeviceOptions } from '../../simulators/device-simulator.js';
import { FACTORY_SECRET, once, startTestService, waitFor, type TestService } from '../helpers/service.js';

// deploy/haproxy.cfg, run by Debian's haproxy on loopback ports in front of real backends: two instances of
// the service standing in for two gateway machines and a third for the api. Until the cluster launcher
// lands, each is the single-process service (role `all`) with its own database: the gateways' MQTT, MQTTS
// and WebSocket (/mqtt on the HTTP port, which also answers /healthz) are what the balancer reaches.

const CONFIG = new URL('../../deploy/haproxy.cfg', import.meta.url).pathname;

function findHaproxy(): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs.filter(Boolean)) {
    try {
      accessSync(join(dir, 'haproxy'), constants.X_OK);
      return join(dir, 'haproxy');
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * HAProxy as a foreground child (-db: no daemon, no master-worker, so the child is HAProxy itself and
 * SIGTERM stops it); resolves once its frontends accept. Stopped in the test's teardown.
 */
async function startHaproxy(t: Test, bin: string, env: Record<string, string>) {
  const child: ChildProcess = spawn(bin, ['-db', '-f', CONFIG], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  // State changes ("Server gateways_mqtt/gw1 is DOWN ...") and alerts come on stderr in foreground mode.
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  createInterface({ input: child.stderr! }).on('line', (line) => {
    lines.push(line);
    for (const w of watchers) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** Resolves with the first stderr line matching `pattern` (already printed or still to come). */
  const line = (pattern: RegExp, timeoutMs = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = lines.find((l) => pattern.test(l));
        if (!hit) return;
        watchers.delete(check);
        clearTimeout(timer);
        resolve(hit);
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(new Error(`haproxy never printed ${pattern}; its stderr:\n${lines.join('\n')}`));
      }, timeoutMs);
      watchers.add(check);
      check();
    });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  // Ready when the stats listener answers: every frontend is bound by then (or haproxy has exited).
  const statsUrl = `http://${env.LB_STATS_BIND}`;
  await Promise.race([
    waitFor(
      () => fetch(`${statsUrl}/lb-healthz`).then((r) => r.status, () => 0),
      (status) => status === 200,
      30_000,
      50,
    ),
    exited.then((code) => {
      throw new Error(`haproxy exited (${code}) on start:\n${lines.join('\n')}`);
    }),
  ]);
  return { line, statsUrl };
}

const haproxy = findHaproxy();
if (!haproxy) {
  t.skip('haproxy in front of gateways and the api: the haproxy binary is absent (apt-get install haproxy; .ci/run installs it)', () => {});
} else {
  await run(haproxy);
}

async function run(bin: string) {
  // The gateways end TLS themselves (the balancer passes MQTTS through): a self-signed certificate.
  const certDir = mkdtempSync(join(tmpdir(), 'icloud-lb-tls-'));
  t.teardown(() => rmSync(certDir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
  const ca = readFileSync(join(certDir, 'cert.pem'));
  const tlsEnv = { TLS_CERT_FILE: join(certDir, 'cert.pem'), TLS_KEY_FILE: join(certDir, 'key.pem'), MQTTS_PORT: '0' };

  const api = await startTestService(t);
  const gw1 = await startTestService(t, tlsEnv);
  const gw2 = await startTestService(t, tlsEnv);
  const gateways = { gw1, gw2 };

  // Every MAC is in both gateways' libraries: a device may land on either.
  const macs = Array.from({ length: 16 }, (_, i) => `0C1105D000${i.toString(16).toUpperCase().padStart(2, '0')}`);
  for (const gw of [gw1, gw2]) {
    const installer = await gw.createInstaller();
    const res = await gw.api('POST', '/api/v1/mac-library/import', { token: installer.token, raw: ['MAC', ...macs].join('\n') });
    if (res.status !== 200 || res.body.added !== macs.length) throw new Error(`MAC import: ${res.status} ${JSON.stringify(res.body)}`);
  }

  const ports = { mqtt: await freePort(), mqtts: await freePort(), ws: await freePort(), http: await freePort(), stats: await freePort() };
  const lb = await startHaproxy(t, bin, {
    LB_MQTT_BIND: `127.0.0.1:${ports.mqtt}`,
    LB_MQTTS_BIND: `127.0.0.1:${ports.mqtts}`,
    LB_WS_BIND: `127.0.0.1:${ports.ws}`,
    LB_HTTP_BIND: `127.0.0.1:${ports.http}`,
    LB_STATS_BIND: `127.0.0.1:${ports.stats}`,
    // Small enough for an ordinary open-file limit; fast checks so that a gateway's end is seen at once.
    LB_MAXCONN: '1000',
    LB_HTTP_MAXCONN: '100',
    LB_CHECK_INTER: '200ms',
    ...Object.fromEntries(
      Object.values(gateways).flatMap((gw, i) => [
        [`GATEWAY${i + 1}_HOST`, '127.0.0.1'],
        [`GATEWAY${i + 1}_MQTT_PORT`, String(gw.service.ports.mqtt)],
        [`GATEWAY${i + 1}_MQTTS_PORT`, String(gw.service.ports.mqtts)],
        // The single-process service serves MQTT over WebSocket (/mqtt) and /healthz on its HTTP port.
        [`GATEWAY${i + 1}_WS_PORT`, String(gw.service.ports.http)],
      ]),
    ),
    API1_HOST: '127.0.0.1',
    API1_PORT: String(api.service.ports.http),
  });

  const devices: SimulatedDevice[] = [];
  // Registered last, so run first: devices stop before the balancer and the services go.
  t.teardown(() => Promise.all(devices.map((d) => d.stop(false))));
  const device = (mac: string, opts: Partial<SimulatedDeviceOptions> = {}) => {
    const d = new SimulatedDevice({ mac, url: `mqtt://127.0.0.1:${ports.mqtt}`, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: false, ...opts });
    devices.push(d);
    return d;
  };
  /** The gateway (gw1, gw2) holding a device's session once its hello was processed, or null. */
  const holder = (mac: string) => (Object.entries(gateways).find(([, gw]) => gw.service.gateway.connectedSince(mac) !== null)?.[0] ?? null);
  const held = (gw: TestService) => gw.service.gateway.connectedDevices;

  t.test('an MQTT client connects through haproxy and gets CONNACK 0 from a gateway', async (t) => {
    const mac = macs[15]!;
    const client = mqtt.connect(`mqtt://127.0.0.1:${ports.mqtt}`, {
      clientId: mac,
      username: mac,
      password: deriveDeviceKey(FACTORY_SECRET, mac),
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
    });
    client.on('error', () => {});
    try {
      const connack = await once<{ returnCode?: number }>(client, 'connect', 30_000);
      t.equal(connack.returnCode, 0, 'CONNACK 0');
      // This client says no hello (the devices below do): the gateways' session counts show where it is.
      const counts = await waitFor(() => [held(gw1), held(gw2)], ([a, b]) => a! + b! === 1, 10_000);
      t.pass(`the session is held by ${counts[0] ? 'gw1' : 'gw2'}`);
    } finally {
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    }
    await waitFor(() => held(gw1) + held(gw2), (n) => n === 0, 10_000);
  });

  const spread = macs.slice(0, 8);
  t.test('leastconn spreads device sessions over both gateways', async (t) => {
    // One at a time, each online before the next: leastconn gives each to the gateway holding fewer.
    for (const mac of spread) {
      const d = device(mac, { reconnect: { minMs: 50, maxMs: 500 } });
      d.start();
      await once(d, 'online', 30_000);
    }
    await waitFor(() => spread.map(holder), (hs) => hs.every((h) => h !== null), 10_000);
    const on1 = spread.filter((m) => holder(m) === 'gw1').length;
    const on2 = spread.filter((m) => holder(m) === 'gw2').length;
    t.equal(on1 + on2, 8, 'every device is held by one gateway');
    t.ok(on1 >= 3 && on2 >= 3, `both gateways hold some (gw1 ${on1}, gw2 ${on2})`);
  });

  t.test('MQTT over WebSocket and MQTTS pass through to a gateway', async (t) => {
    const ws = device(macs[8]!, { url: `ws://127.0.0.1:${ports.ws}/mqtt` });
    const tls = device(macs[9]!, { url: `mqtts://127.0.0.1:${ports.mqtts}`, ca });
    ws.start();
    tls.start();
    await Promise.all([once(ws, 'online', 30_000), once(tls, 'online', 30_000)]);
    const holders = await waitFor(() => [holder(macs[8]!), holder(macs[9]!)], (hs) => hs.every((h) => h !== null), 10_000);
    t.ok(holders[0], `WebSocket session held by ${holders[0]}`);
    t.ok(holders[1], `TLS session held by ${holders[1]} (TLS ended at the gateway)`);
    await Promise.all([ws.stop(), tls.stop()]);
    await waitFor(() => [holder(macs[8]!), holder(macs[9]!)], (hs) => hs.every((h) => h === null), 10_000);
  });

  t.test('the API answers /healthz and /api/v1 through haproxy', async (t) => {
    const health = await fetch(`http://127.0.0.1:${ports.http}/healthz`, { signal: AbortSignal.timeout(10_000) });
    t.equal(health.status, 200, '/healthz answers 200 through haproxy');
    // The api backend is the third service: the installer made there is not in the gateways' databases.
    const installer = await api.createInstaller('Through the balancer');
    const me = await fetch(`http://127.0.0.1:${ports.http}/api/v1/mac-library`, { headers: { authorization: `Bearer ${installer.token}` }, signal: AbortSignal.timeout(10_000) });
    t.equal(me.status, 200, "the api service knows the installer's token");
    const stats = await fetch(`${lb.statsUrl}/stats;csv`).then((r) => r.text());
    t.match(stats, /^api,api1,.*,UP,/m, 'the api server is UP in the stats');
  });

  t.test('when a gateway goes away, its devices and new connections go to the other', async (t) => {
    const moved = spread.filter((m) => holder(m) === 'gw1');
    t.ok(moved.length > 0, `gw1 held ${moved.length} devices`);
    await gw1.service.close();
    // gw1's HTTP port closed: its check fails, and the MQTT and MQTTS servers follow it down.
    t.match(await lb.line(/Server gateways_mqtt\/gw1 is DOWN/), /via gateways_ws\/gw1/, 'haproxy takes gw1 out of MQTT, following its check');
    // The devices gw1 dropped reconnect (with backoff) through the balancer and land on gw2.
    await waitFor(() => spread.map(holder), (hs) => hs.every((h) => h === 'gw2'), 60_000);
    t.pass('all 8 devices are back, on gw2');
    const fresh = [device(macs[10]!), device(macs[11]!), device(macs[12]!, { url: `ws://127.0.0.1:${ports.ws}/mqtt` })];
    for (const d of fresh) {
      d.start();
      await once(d, 'online', 30_000);
    }
    const holders = await waitFor(() => fresh.map((d) => holder(d.opts.mac)), (hs) => hs.every((h) => h !== null), 10_000);
    t.same(holders, ['gw2', 'gw2', 'gw2'], 'new connections (TCP and WebSocket) go to gw2');
    t.equal(held(gw2), 11, 'gw2 holds all 11 sessions');
  });
}
