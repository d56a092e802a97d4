import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fleetMacs } from '../simulators/fleet.js';
import { startBareAedes, startMosquitto } from './lib/brokers.js';
import { startFleet } from './lib/fleet.js';
import { runBench } from './lib/proc.js';
import { benchService, build, registerFleet } from './lib/service.js';
import { storm } from './lib/storm.js';

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

/** A storm against one broker process, as the table shows it. */
interface BrokerStorm {
  connectSeconds: number; // storm start until every device connected and subscribed
  onlineViaApiSeconds: number | null;
  connectsPerSecond: number;
  rssPerSessionBytes: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  cpuSeconds: number;
  refusals: number;
}

async function brokerStorm(brokerPid: number, url: string, secret: string | null, hello: boolean, apiOnline?: () => Promise<number>): Promise<BrokerStorm> {
  const fleet = await startFleet({ url, secret, hello, macs, workers: WORKERS, children, start: false });
  const r = await storm(fleet, { devices: N, pids: [brokerPid], apiOnline, timeoutMs: TIMEOUT_MS, stallMs: TIMEOUT_MS, log });
  await fleet.stop();
  const [broker] = r.processes;
  return {
    connectSeconds: r.connectSeconds,
    onlineViaApiSeconds: r.onlineViaApiSeconds,
    connectsPerSecond: r.connectsPerSecond,
    rssPerSessionBytes: (broker!.rssAfter - broker!.rssBefore) / r.held,
    rssBeforeMb: broker!.rssBefore / 2 ** 20,
    rssAfterMb: broker!.rssAfter / 2 ** 20,
    cpuSeconds: broker!.cpuSeconds,
    refusals: r.fleet.refused,
  };
}

async function benchGateway(): Promise<BrokerStorm> {
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
  const result = await brokerStorm(service.pid!, `mqtt://127.0.0.1:${svc.mqttPort}`, svc.secret, true, online);
  await svc.stop();
  return result;
}

async function benchReference(start: typeof startMosquitto): Promise<BrokerStorm> {
  const broker = await start(children);
  const result = await brokerStorm(broker.pid, broker.url, null, false);
  await broker.stop();
  return result;
}

function row(name: string, r: BrokerStorm) {
  return `| ${name} | ${fmt(r.connectSeconds, 2)} s | ${r.onlineViaApiSeconds === null ? 'n/a' : `${fmt(r.onlineViaApiSeconds, 2)} s`} | ${fmt(r.connectsPerSecond, 0)} | ${fmt(r.rssPerSessionBytes / 1024, 2)} KB | ${fmt(r.rssBeforeMb)} → ${fmt(r.rssAfterMb)} MB | ${fmt(r.cpuSeconds, 2)} s | ${r.refusals} |`;
}

await runBench(children, cleanups, async () => {
  log(`gateway benchmark: ${N} devices, ${WORKERS} fleet processes from ${addresses.join(', ')}`);
  const references = args.reference.split(',').filter((r) => r !== 'none');
  const ours = await benchGateway();
  const mosquitto = references.includes('mosquitto') ? await benchReference(startMosquitto) : null;
  const aedes = references.includes('aedes') ? await benchReference(startBareAedes) : null;
  console.log(`\n| broker | all connected + subscribed | all online via API | connects/s | RSS per session | broker RSS | broker CPU | refusals |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
  console.log(row('intercom gateway (auth + presence)', ours));
  if (mosquitto) console.log(row('mosquitto 2 (no auth)', mosquitto));
  if (aedes) console.log(row('bare aedes (no auth)', aedes));
  console.log('');
  for (const [name, ref] of [['mosquitto', mosquitto], ['bare aedes', aedes]] as const) {
    if (ref) console.log(`ratios gateway / ${name}: storm time ${fmt(ours.connectSeconds / ref.connectSeconds, 2)}×, RSS per session ${fmt(ours.rssPerSessionBytes / ref.rssPerSessionBytes, 2)}×, CPU ${fmt(ours.cpuSeconds / ref.cpuSeconds, 2)}×`);
  }
});
