import { execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { freePort } from '../../src/infra/net.js';
import { spawnTied } from '../../src/infra/tied-child.js';
import { SimulatedDevice, type SimulatedDeviceOptions } from '../../simulators/device-simulator.js';
import { apiClient, FACTORY_SECRET, once, waitFor } from '../helpers/service.js';
import { startTestCluster } from '../helpers/cluster.js';

// deploy/haproxy.cfg, run by Debian's haproxy on loopback ports in front of two machines of ONE deployment,
// as docs/deployment.md lays it out: each machine is a real launcher (src/cluster/launcher.ts) with real
// role processes, and both share one PostgreSQL and one Redis.
//
//   machine A: launcher with 1 gateway, 1 engine, 1 api   -> GATEWAY1_* (MQTT, MQTTS, WS) and API1
//   machine B: launcher with 1 gateway only, on A's database and Redis   -> GATEWAY2_*
//
// The balancer reaches the gateway processes' MQTT_PORT, MQTTS_PORT and MQTT_WS_PORT (WebSocket at /mqtt
// and /healthz, which every gateway is checked with), and the api process's HTTP_PORT.

const CONFIG = new URL('../../deploy/haproxy.cfg', import.meta.url).pathname;
const finished = ['succeeded', 'failed', 'expired', 'canceled'];

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
  const child: ChildProcess = spawnTied(bin, ['-db', '-f', CONFIG], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  // State changes ("Server gateways_mqtt/gw1 is DOWN ...") and alerts come on stderr in foreground mode.
  const lines: string[] = [];
  const watchers = new Set<() => void>();
  createInterface({ input: child.stderr! }).on('line', (line) => {
    lines.push(line);
    for (const w of watchers) w();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  /** How many stderr lines were printed so far: `line(pattern, mark())` then looks at later ones only. */
  const mark = () => lines.length;
  /** Resolves with the first stderr line from index `from` on matching `pattern` (printed or still to come). */
  const line = (pattern: RegExp, from = 0, timeoutMs = 30_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const hit = lines.slice(from).find((l) => pattern.test(l));
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
  /** A server's status in the stats CSV ("UP", "DOWN", "DOWN 1/2", ...). */
  const status = async (backend: string, server: string) => {
    const csv = await fetch(`${statsUrl}/stats;csv`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text());
    const [header, ...rows] = csv.split('\n');
    const column = header!.replace(/^# /, '').split(',').indexOf('status');
    return rows.map((r) => r.split(',')).find((r) => r[0] === backend && r[1] === server)?.[column] ?? null;
  };
  return { line, mark, status, statsUrl };
}

const haproxy = findHaproxy();
if (!haproxy) {
  t.skip('haproxy in front of two machines of a deployment: the haproxy binary is absent (apt-get install haproxy; .ci/run installs it)', () => {});
} else {
  await run(haproxy);
}

async function run(bin: string) {
  // The gateways end TLS themselves (the balancer passes MQTTS through): a self-signed certificate.
  const certDir = mkdtempSync(join(tmpdir(), 'icloud-lb-tls-'));
  t.teardown(() => rmSync(certDir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
  const ca = readFileSync(join(certDir, 'cert.pem'));

  // The balancer's ports first: PUBLIC_URL (what commands name for downloads) is its HTTP address.
  const ports = { mqtt: await freePort(), mqtts: await freePort(), ws: await freePort(), http: await freePort(), stats: await freePort() };
  const lbHttp = `http://127.0.0.1:${ports.http}`;
  const env = { TLS_CERT_FILE: join(certDir, 'cert.pem'), TLS_KEY_FILE: join(certDir, 'key.pem'), MQTTS_PORT: '0', PUBLIC_URL: lbHttp };

  const a = await startTestCluster(t, { gateways: 1, engines: 1, apis: 1, env });
  const installer = await a.createInstaller('Behind the balancer');
  const token = installer.token;
  const macs = Array.from({ length: 16 }, (_, i) => `0C1105D000${i.toString(16).toUpperCase().padStart(2, '0')}`);
  for (const mac of macs) await a.addDevice(token, mac);
  // Machine B joins the same deployment: A's PostgreSQL, the same Redis (the default), the same factory
  // secret; it runs a gateway and nothing else. Its gateway loads the MAC library A just filled.
  const b = await startTestCluster(t, { gateways: 1, engines: 0, apis: 0, databaseUrl: a.databaseUrl, env });
  const gatewayOf = (c: typeof a) => c.workers.find((w) => w.role === 'gateway')!.pid;
  const gwA = gatewayOf(a);
  let gwB = gatewayOf(b);
  if (!a.mqttsUrl || !b.mqttsUrl) throw new Error('the gateways were given a certificate but serve no MQTTS');
  const portOf = (url: string) => new URL(url).port;

  // The ports were free when picked, but anything on this machine may take one meanwhile (an outgoing
  // connection's source port): a bind refused is tried again on fresh ports (not the HTTP one: PUBLIC_URL).
  const lbEnv = () => ({
    LB_MQTT_BIND: `127.0.0.1:${ports.mqtt}`,
    LB_MQTTS_BIND: `127.0.0.1:${ports.mqtts}`,
    LB_WS_BIND: `127.0.0.1:${ports.ws}`,
    LB_HTTP_BIND: `127.0.0.1:${ports.http}`,
    LB_STATS_BIND: `127.0.0.1:${ports.stats}`,
    // Small enough for an ordinary open-file limit; fast checks so that a gateway's end is seen at once.
    LB_MAXCONN: '1000',
    LB_HTTP_MAXCONN: '100',
    LB_HTTP_MAXCONN_PER_SOURCE: '20',
    LB_CHECK_INTER: '200ms',
    ...Object.fromEntries(
      [a, b].flatMap((machine, i) => [
        [`GATEWAY${i + 1}_HOST`, '127.0.0.1'],
        [`GATEWAY${i + 1}_MQTT_PORT`, portOf(machine.mqttUrl)],
        [`GATEWAY${i + 1}_MQTTS_PORT`, portOf(machine.mqttsUrl!)],
        // A gateway process serves MQTT over WebSocket (/mqtt) and /healthz on its MQTT_WS_PORT.
        [`GATEWAY${i + 1}_WS_PORT`, portOf(machine.wsUrl)],
      ]),
    ),
    API1_HOST: '127.0.0.1',
    API1_PORT: portOf(a.httpUrl),
  });
  let lb: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  for (let attempt = 1; !lb; attempt++) {
    try {
      lb = await startHaproxy(t, bin, lbEnv());
    } catch (err) {
      if (attempt >= 3 || !/Address already in use/.test((err as Error).message) || (err as Error).message.includes(`:${ports.http}]`)) throw err;
      Object.assign(ports, { mqtt: await freePort(), mqtts: await freePort(), ws: await freePort(), stats: await freePort() });
    }
  }

  // Every API call of the test goes through the balancer.
  const api = apiClient(lbHttp);

  const devices: SimulatedDevice[] = [];
  // Registered last, so run first (teardowns run last-in first-out): devices stop before the balancer
  // and the machines go.
  t.teardown(() => Promise.all(devices.map((d) => d.stop(false))));
  const device = (mac: string, opts: Partial<SimulatedDeviceOptions> = {}) => {
    const d = new SimulatedDevice({ mac, url: `mqtt://127.0.0.1:${ports.mqtt}`, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: { minMs: 50, maxMs: 500 }, ...opts });
    devices.push(d);
    return d;
  };
  /** The gateway process (pid) holding each device's session, from the shared database. */
  const holders = (list: string[]) => Promise.all(list.map((m) => a.holderPid(m)));
  const offline = (list: string[]) =>
    waitFor(
      () => a.sql(`SELECT count(*)::int AS n FROM devices WHERE mac = ANY($1) AND status = 'online'`, [list]),
      ([row]) => row.n === 0,
      30_000,
      50,
    );
  const where = (pid: number | null) => (pid === gwA ? 'A' : pid === gwB ? 'B' : String(pid));

  t.test('an MQTT client connects through haproxy and gets CONNACK 0 from a gateway process', async (t) => {
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
      const [pid] = await waitFor(() => holders([mac]), ([p]) => p !== null, 10_000, 50);
      t.ok(pid === gwA || pid === gwB, `the session is held by machine ${where(pid!)}'s gateway process`);
    } finally {
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    }
    // Its end seen by the gateway (so by the balancer too): the spread below starts from no connection.
    await offline([mac]);
  });

  const spread = macs.slice(0, 8);
  const spreadDevices = new Map<string, SimulatedDevice>();
  t.test('leastconn spreads device sessions over both machines’ gateway processes', async (t) => {
    // One at a time, each online before the next: leastconn gives each to the gateway holding fewer.
    for (const mac of spread) {
      const d = device(mac);
      spreadDevices.set(mac, d);
      d.start();
      await once(d, 'online', 30_000);
    }
    const pids = await waitFor(() => holders(spread), (hs) => hs.every((h) => h !== null), 10_000, 50);
    const onA = pids.filter((p) => p === gwA).length;
    const onB = pids.filter((p) => p === gwB).length;
    t.equal(onA + onB, 8, 'every device is held by a gateway process of A or B');
    t.ok(onA >= 3 && onB >= 3, `both machines hold some (A ${onA}, B ${onB})`);
    // The hello's boot provisioning reached every device, on either machine (the engine runs on A).
    await waitFor(() => [...spreadDevices.values()].every((d) => d.applications.length >= 1), Boolean, 60_000, 50);
    t.pass('boot provisioning reached all 8 devices');
  });

  t.test('a command made through the API on A reaches a device whose session is on B', async (t) => {
    const pids = await holders(spread);
    const onB = spread.find((_, i) => pids[i] === gwB)!;
    const onA = spread.find((_, i) => pids[i] === gwA)!;
    const jobs = new Map<string, string>();
    for (const mac of [onB, onA]) {
      const res = await api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.X = 1' } });
      t.equal(res.status, 202, `${mac}: the command is accepted through the balancer`);
      jobs.set(mac, res.body.job.id);
    }
    const ends = await waitFor(
      () => Promise.all([onB, onA].map((mac) => api('GET', `/api/v1/jobs/${jobs.get(mac)}`, { token }).then((r) => r.body))),
      (list) => list.every((j) => finished.includes(j?.state)),
      60_000,
      100,
    );
    t.same(
      ends.map((j) => j.state),
      ['succeeded', 'succeeded'],
      'both commands succeeded: to the device on B and to the device on A',
    );
    for (const mac of [onB, onA]) {
      const d = spreadDevices.get(mac)!;
      t.equal(d.applications.filter((x) => x.id === jobs.get(mac)).length, 1, `${mac} (on ${where(pids[spread.indexOf(mac)]!)}) applied it once`);
      t.equal(d.config.get('Config.X'), '1', `${mac} has Config.X = 1`);
    }
    t.same(await holders([onB]), [gwB], 'the device answered from its session on B');
  });

  t.test('MQTT over WebSocket and MQTTS pass through to both machines’ gateway processes', async (t) => {
    // Two of each, one after the other: leastconn gives the second to the machine the first did not take.
    const ws = [macs[8]!, macs[9]!];
    const tls = [macs[10]!, macs[11]!];
    const started = [...ws.map((m) => device(m, { url: `ws://127.0.0.1:${ports.ws}/mqtt` })), ...tls.map((m) => device(m, { url: `mqtts://127.0.0.1:${ports.mqtts}`, ca }))];
    for (const d of started) {
      d.start();
      await once(d, 'online', 30_000);
    }
    const pids = await waitFor(() => holders([...ws, ...tls]), (hs) => hs.every((h) => h !== null), 10_000, 50);
    t.same(new Set(pids.slice(0, 2)), new Set([gwA, gwB]), `WebSocket sessions on A and B (${pids.slice(0, 2).map(where).join(', ')})`);
    t.same(new Set(pids.slice(2)), new Set([gwA, gwB]), `MQTTS sessions on A and B, TLS ended at the gateways (${pids.slice(2).map(where).join(', ')})`);
    await Promise.all(started.map((d) => d.stop()));
    await offline([...ws, ...tls]);
  });

  t.test('the API answers /healthz and /api/v1 through haproxy', async (t) => {
    const health = await fetch(`${lbHttp}/healthz`, { signal: AbortSignal.timeout(10_000) });
    t.equal(health.status, 200, '/healthz answers 200 through haproxy');
    const listed = await api('GET', '/api/v1/devices?status=online&pageSize=100', { token });
    t.equal(listed.status, 200, 'GET /api/v1/devices answers 200 through haproxy');
    t.equal(listed.body.total, 8, 'the API (on A) lists the 8 devices online, wherever their sessions are');
    t.equal(await lb.status('api', 'api1'), 'UP', 'the api server is UP in the stats');
    t.same([await lb.status('gateways_ws', 'gw1'), await lb.status('gateways_ws', 'gw2')], ['UP', 'UP'], 'both gateways are UP in the stats');
  });

  t.test('one address holds at most LB_HTTP_MAXCONN_PER_SOURCE HTTP connections, and slow headers are cut; another address is served', async (t) => {
    // 21 connections from 127.0.0.3 that never finish their headers: the 21st is refused at accept.
    const state = { closed: 0, answered: 0, refused: 0 };
    const sockets = Array.from({ length: 21 }, () => {
      const s = net.connect({ host: '127.0.0.1', port: ports.http, localAddress: '127.0.0.3' });
      let answered = false;
      s.on('error', () => {});
      s.once('connect', () => s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'));
      s.once('data', () => ((answered = true), state.answered++));
      s.once('close', () => (state.closed++, answered || state.refused++));
      return s;
    });
    t.teardown(() => sockets.forEach((s) => s.destroy()));
    const other = await new Promise<number>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: ports.http, path: '/healthz', localAddress: '127.0.0.4', agent: false }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject);
    });
    t.equal(other, 200, 'another address is served meanwhile');
    await waitFor(() => state.closed, (n) => n === 21);
    t.same([state.refused, state.answered], [1, 20], 'one refused unanswered; the 20 held got their 408 when their headers were late');
  });

  t.test('when B’s gateway process is killed, haproxy takes it out and its devices reconnect to A', async (t) => {
    const before = await holders(spread);
    const moved = spread.filter((_, i) => before[i] === gwB);
    t.ok(moved.length > 0, `B held ${moved.length} devices`);
    const mark = lb.mark();
    const restarted = b.nextRestart('gateway');
    const killedAt = Date.now();
    process.kill(gwB, 'SIGKILL');
    // B's WS port closed with its only gateway: its check fails, and the MQTT and MQTTS servers follow it.
    t.match(await lb.line(/Server gateways_mqtt\/gw2 is DOWN/, mark), /via gateways_ws\/gw2/, 'haproxy takes B out of MQTT, following its check');
    t.match(await lb.line(/Server gateways_mqtts\/gw2 is DOWN/, mark), /via gateways_ws\/gw2/, 'and out of MQTTS');
    // The devices B dropped reconnect (with backoff) through the balancer and land on A's gateway.
    await waitFor(() => holders(moved), (hs) => hs.every((h) => h === gwA), 60_000, 100);
    t.pass(`the ${moved.length} devices of B are back, on A`);
    const views = await Promise.all(moved.map((mac) => api('GET', `/api/v1/devices/${mac}`, { token }).then((r) => r.body)));
    t.ok(
      views.every((v) => v.status === 'online' && Date.parse(v.lastConnectedAt) >= killedAt),
      'the API shows each of them online, connected again since the kill',
    );
    const listed = await api('GET', '/api/v1/devices?status=online&pageSize=100', { token });
    t.equal(listed.body.total, 8, 'the API lists all 8 devices online');

    // B's launcher restarts its gateway; haproxy puts B back, and leastconn sends it the next device.
    const back = await restarted;
    t.not(back.pid, gwB, 'B’s launcher restarted its gateway process');
    gwB = back.pid;
    await waitFor(() => lb.status('gateways_mqtt', 'gw2'), (s) => s === 'UP', 30_000, 100);
    t.pass('haproxy marks B up again');
    const fresh = device(macs[12]!);
    fresh.start();
    await once(fresh, 'online', 30_000);
    const [pid] = await waitFor(() => holders([macs[12]!]), ([p]) => p !== null, 10_000, 50);
    t.equal(pid, gwB, 'a new device goes to B’s new gateway process (it holds the fewest)');
  });
}
