import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fleetMacs } from '../simulators/fleet.js';
import { cpuSeconds, freePort, rssBytes, sleep } from './lib/proc.js';
import { benchService, build, registerFleet, root } from './lib/service.js';

// npm run bench:gateway -- --devices 19000 [--workers 4] [--reference mosquitto|none]
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '19000' },
    workers: { type: 'string', default: '4' },
    reference: { type: 'string', default: 'mosquitto,aedes', description: 'comma-separated: mosquitto, aedes, or none' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    timeout: { type: 'string', default: '120', description: 'seconds a storm may take' },
    'cpu-prof-dir': { type: 'string', description: 'write a V8 CPU profile of the gateway process here' },
  },
});
const N = Number(args.devices);
const WORKERS = Number(args.workers);
const TIMEOUT_MS = Number(args.timeout) * 1000;
const macs = fleetMacs('B0C5', N);
const addresses = Array.from({ length: WORKERS }, (_, i) => `127.0.0.${i + 2}`);
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

interface StormResult {
  connectSeconds: number; // storm start until every device connected and subscribed
  onlineViaApiSeconds: number | null;
  connectsPerSecond: number;
  rssPerSessionBytes: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  cpuSeconds: number;
  refusals: number;
}

function startWorkers(url: string, secret: string | null, hello: boolean): Promise<ChildProcess[]> {
  const per = Math.ceil(N / WORKERS);
  return Promise.all(
    addresses.map(
      (address, i) =>
        new Promise<ChildProcess>((resolveWorker, reject) => {
          const child = fork(join(root, 'simulators/fleet-worker.ts'), [], {
            execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
            env: { ...process.env, FLEET_WORKER_CONFIG: JSON.stringify({ macs: macs.slice(i * per, (i + 1) * per), url, factorySecret: secret, localAddress: address, type: '0', hello }) },
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          });
          children.push(child);
          child.once('error', reject);
          child.once('message', (m: any) => (m.type === 'ready' ? resolveWorker(child) : reject(new Error('worker did not start'))));
        }),
    ),
  );
}

async function storm(brokerPid: number, url: string, secret: string | null, hello: boolean, apiOnline?: () => Promise<number>): Promise<StormResult> {
  const workers = await startWorkers(url, secret, hello);
  const progress = new Map<ChildProcess, { subscribed: number; refusals: number; lastSubscribedAt: number }>();
  for (const w of workers) w.on('message', (m: any) => m.type === 'progress' && progress.set(w, m));
  await sleep(1000);
  const rssBefore = rssBytes(brokerPid);
  const cpuBefore = cpuSeconds(brokerPid);
  const t0 = Date.now();
  for (const w of workers) w.send({ type: 'start' });
  const total = () => [...progress.values()].reduce((a, p) => a + p.subscribed, 0);
  let onlineViaApiSeconds: number | null = null;
  while (Date.now() - t0 < TIMEOUT_MS) {
    if (apiOnline && onlineViaApiSeconds === null && (await apiOnline()) >= N) onlineViaApiSeconds = (Date.now() - t0) / 1000;
    if (total() >= N && (!apiOnline || onlineViaApiSeconds !== null)) break;
    await sleep(50);
  }
  if (total() < N) log(`storm timed out: ${total()} of ${N} subscribed`);
  const lastSubscribedAt = Math.max(...[...progress.values()].map((p) => p.lastSubscribedAt));
  const connectSeconds = (lastSubscribedAt - t0) / 1000;
  await sleep(5000); // let the broker settle (and collect garbage) before measuring memory
  const rssAfter = rssBytes(brokerPid);
  const cpuUsed = cpuSeconds(brokerPid) - cpuBefore;
  const refusals = [...progress.values()].reduce((a, p) => a + p.refusals, 0);
  await Promise.all(workers.map((w) => new Promise<void>((r) => (w.once('exit', () => r()), w.send({ type: 'stop' })))));
  return {
    connectSeconds,
    onlineViaApiSeconds,
    connectsPerSecond: N / connectSeconds,
    rssPerSessionBytes: (rssAfter - rssBefore) / N,
    rssBeforeMb: rssBefore / 2 ** 20,
    rssAfterMb: rssAfter / 2 ** 20,
    cpuSeconds: cpuUsed,
    refusals,
  };
}

async function benchGateway(): Promise<StormResult> {
  log('building the service');
  build();
  const svc = await benchService(args['pg-admin-url'], { MQTT_MAX_CONNECTIONS: String(Math.max(N + 100, 19_000)) });
  cleanups.push(() => svc.cleanup());
  const profile = args['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof-dir']}`] : [];
  const setup = await svc.start();
  children.push(setup);
  log(`service up (pid ${setup.pid}); registering ${N} MACs and devices`);
  await registerFleet(svc, macs);
  // The storm hits a freshly started gateway, as after a power cut, so its baseline holds no garbage
  // from the registration phase.
  await svc.stop();
  const service = await svc.start({}, profile);
  children.push(service);
  log(`registered; gateway restarted (pid ${service.pid}); starting the storm`);
  const online = async () => (await svc.api('GET', '/api/v1/devices?status=online&pageSize=1')).total as number;
  const result = await storm(service.pid!, `mqtt://127.0.0.1:${svc.mqttPort}`, svc.secret, true, online);
  await svc.stop();
  return result;
}

async function benchMosquitto(): Promise<StormResult> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'icbench-mosquitto-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 0.0.0.0\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_dest none\n`);
  const broker = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(broker);
  await sleep(500);
  const result = await storm(broker.pid!, `mqtt://127.0.0.1:${port}`, null, false);
  broker.kill('SIGTERM');
  return result;
}

async function benchBareAedes(): Promise<StormResult> {
  const port = await freePort();
  const broker = fork(join(root, 'bench/lib/bare-aedes.ts'), [String(port)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(broker);
  await new Promise((r) => broker.once('message', r));
  const result = await storm(broker.pid!, `mqtt://127.0.0.1:${port}`, null, false);
  broker.kill('SIGTERM');
  return result;
}

function row(name: string, r: StormResult) {
  return `| ${name} | ${fmt(r.connectSeconds, 2)} s | ${r.onlineViaApiSeconds === null ? 'n/a' : `${fmt(r.onlineViaApiSeconds, 2)} s`} | ${fmt(r.connectsPerSecond, 0)} | ${fmt(r.rssPerSessionBytes / 1024, 2)} KB | ${fmt(r.rssBeforeMb)} → ${fmt(r.rssAfterMb)} MB | ${fmt(r.cpuSeconds, 2)} s | ${r.refusals} |`;
}

try {
  log(`gateway benchmark: ${N} devices, ${WORKERS} fleet processes from ${addresses.join(', ')}`);
  const references = args.reference.split(',').filter((r) => r !== 'none');
  const ours = await benchGateway();
  const mosquitto = references.includes('mosquitto') ? await benchMosquitto() : null;
  const aedes = references.includes('aedes') ? await benchBareAedes() : null;
  console.log(`\n| broker | all connected + subscribed | all online via API | connects/s | RSS per session | broker RSS | broker CPU | refusals |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
  console.log(row('intercom gateway (auth + presence)', ours));
  if (mosquitto) console.log(row('mosquitto 2 (no auth)', mosquitto));
  if (aedes) console.log(row('bare aedes (no auth)', aedes));
  console.log('');
  for (const [name, ref] of [['mosquitto', mosquitto], ['bare aedes', aedes]] as const) {
    if (ref) console.log(`ratios gateway / ${name}: storm time ${fmt(ours.connectSeconds / ref.connectSeconds, 2)}×, RSS per session ${fmt(ours.rssPerSessionBytes / ref.rssPerSessionBytes, 2)}×, CPU ${fmt(ours.cpuSeconds / ref.cpuSeconds, 2)}×`);
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c();
}
