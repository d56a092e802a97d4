import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fleetMacs } from '../simulators/fleet.js';
import { startBareAedes, startMosquitto } from './lib/brokers.js';
import { startFleet } from './lib/fleet.js';
import { runBench, waitUntil } from './lib/proc.js';
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

async function brokerStorm(
  brokerPid: number,
  url: string,
  secret: string | null,
  hello: boolean,
  opts: { apiOnline?: () => Promise<number>; configHashes?: Record<string, string>; beforeStop?: () => Promise<unknown> } = {},
): Promise<BrokerStorm> {
  const fleet = await startFleet({ url, secret, hello, macs, workers: WORKERS, children, start: false, configHashes: opts.configHashes });
  const r = await storm(fleet, { devices: N, pids: [brokerPid], apiOnline: opts.apiOnline, timeoutMs: TIMEOUT_MS, stallMs: TIMEOUT_MS, log });
  // Work the storm started (first-boot provisioning) finishes while the devices are still connected.
  await opts.beforeStop?.();
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

/**
 * Two storms against a freshly started gateway each time, as after a power cut: the first boot (every
 * device in factory state: each is provisioned), then a reboot (every device holds the configuration the
 * first storm gave it and says so in its hello: no job).
 */
async function benchGateway(): Promise<{ firstBoot: BrokerStorm; reboot: BrokerStorm }> {
  log('building the service');
  build();
  // The per-address cap (1,000 by default) would stop each fleet process, one address each, at 1,000 devices.
  const svc = await benchService(args['pg-admin-url'], { MQTT_MAX_CONNECTIONS: String(Math.max(N + 100, 19_000)), MQTT_MAX_CONNECTIONS_PER_ADDRESS: String(Math.ceil(N / WORKERS) + 100) });
  cleanups.push(() => svc.cleanup());
  const profile = args['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof-dir']}`] : [];
  const setup = await svc.start();
  children.push(setup);
  log(`service up (pid ${setup.pid}); registering ${N} MACs and devices`);
  await registerFleet(svc, macs);
  const online = async () => (await svc.api('GET', '/api/v1/devices?status=online&pageSize=1')).total as number;
  const storms: BrokerStorm[] = [];
  for (const kind of ['first-boot', 'reboot'] as const) {
    // The storm hits a freshly started gateway, so its baseline holds no garbage from what came before.
    await svc.stop();
    const hashes =
      kind === 'reboot' ? Object.fromEntries((await svc.sql<{ mac: string; h: string }>(`SELECT mac, config_hash AS h FROM devices WHERE config_hash IS NOT NULL`)).map((r) => [r.mac, r.h])) : undefined;
    if (hashes && Object.keys(hashes).length < N) log(`only ${Object.keys(hashes).length} of ${N} devices hold a configuration`);
    const service = await svc.start({}, profile);
    children.push(service);
    log(`gateway started (pid ${service.pid}); ${kind} storm`);
    const provisioned = () => waitUntil(async () => (await svc.sql<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE finished_at IS NULL`))[0]!.n === 0, TIMEOUT_MS, 500);
    storms.push(await brokerStorm(service.pid!, `mqtt://127.0.0.1:${svc.mqttPort}`, svc.secret, true, { apiOnline: online, configHashes: hashes, beforeStop: kind === 'first-boot' ? provisioned : undefined }));
    const said = [...svc.logs()].map(([line, n]) => `${line} ×${n}`);
    log(`${kind} storm: the service's warnings and errors: ${said.length ? said.join('; ') : 'none'}`);
  }
  await svc.stop();
  return { firstBoot: storms[0]!, reboot: storms[1]! };
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
  const { firstBoot, reboot } = await benchGateway();
  const mosquitto = references.includes('mosquitto') ? await benchReference(startMosquitto) : null;
  const aedes = references.includes('aedes') ? await benchReference(startBareAedes) : null;
  console.log(`\n| broker | all connected + subscribed | all online via API | connects/s | RSS per session | broker RSS | broker CPU | refusals |`);
  console.log(`| --- | --- | --- | --- | --- | --- | --- | --- |`);
  console.log(row('intercom gateway, reboot storm (hello with its configuration hash: no job)', reboot));
  console.log(row('intercom gateway, first-boot storm (every device provisioned)', firstBoot));
  if (mosquitto) console.log(row('mosquitto 2 (no auth)', mosquitto));
  if (aedes) console.log(row('bare aedes (no auth)', aedes));
  console.log('');
  for (const [name, ref] of [['mosquitto', mosquitto], ['bare aedes', aedes]] as const) {
    if (!ref) continue;
    for (const [storm, ours] of [['reboot', reboot], ['first-boot', firstBoot]] as const) {
      const online = ours.onlineViaApiSeconds ?? ours.connectSeconds;
      console.log(
        `ratios gateway ${storm} storm / ${name}: online via API ${fmt(online / ref.connectSeconds, 2)}×, all subscribed ${fmt(ours.connectSeconds / ref.connectSeconds, 2)}×, RSS per session ${fmt(ours.rssPerSessionBytes / ref.rssPerSessionBytes, 2)}×, CPU ${fmt(ours.cpuSeconds / ref.cpuSeconds, 2)}×`,
      );
    }
  }
});
