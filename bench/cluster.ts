import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { fleetMacs } from '../simulators/fleet.js';
import { startMosquitto } from './lib/brokers.js';
import { DEVICES_PER_FLEET_PROCESS, fleetProcessesFor, startFleet } from './lib/fleet.js';
import { bootStorm, commandLatency, jobsSettled, queueOneTimeAutop, pct, type BootStorm, type CommandLatency } from './lib/jobs.js';
import { runBench, waitUntil } from './lib/proc.js';
import { assertClusterLauncher, benchService, build, registerFleet, type BenchService } from './lib/service.js';
import { secondsToHold, storm, type StormResult } from './lib/storm.js';
import { rateSweep, sweepTable, type SweepStep } from './lib/sweep.js';

// npm run bench:cluster -- --devices 100000 --gateways 6 [--engines 1] [--reference single,mosquitto|none]
//   [--only all|cluster|references] [--timeout 900] [--stall 20] [--rate 500] [--seconds 20] [--boot-devices 10000]
//   [--rates 250,500,1000,2000,4000|none] [--sweep-seconds 20] (rate sweep on the cluster, after the fixed-rate run)
// The cluster part needs the launcher of /work/shared-notes/cluster-contract.md (dist/src/cluster/launcher.js).
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '100000' },
    gateways: { type: 'string', default: '6' },
    engines: { type: 'string', default: '1' },
    reference: { type: 'string', default: 'single,mosquitto', description: 'comma-separated: single, mosquitto, or none' },
    only: { type: 'string', default: 'all', description: 'all, cluster (no references) or references (no cluster)' },
    timeout: { type: 'string', default: '900', description: 'seconds a storm may take' },
    'storm-hello': { type: 'string', default: 'factory', description: 'factory: every device says hello in factory state and is provisioned (a first boot); none: devices hold their sessions without a hello, so the storm measures sessions held, not provisioning' },
    'start-rate': { type: 'string', default: '0', description: 'devices the fleet starts per second in the storm (0: all at once); one client machine cannot open 100,000 connections at once without its SYNs overflowing the listen queue' },
    stall: { type: 'string', default: '20', description: 'seconds without a new device held that end a storm' },
    rate: { type: 'string', default: '500', description: 'commands per second of the latency run' },
    seconds: { type: 'string', default: '20', description: 'length of the latency run' },
    rates: { type: 'string', default: '250,500,1000,2000,4000', description: 'rate sweep on the cluster: jobs/s of each step (one request per job), or none' },
    'sweep-seconds': { type: 'string', default: '20', description: 'length of each step of the rate sweep' },
    'max-in-flight': { type: 'string', default: '512', description: 'requests open at most in the sweep; one due beyond is counted as not sent' },
    'boot-devices': { type: 'string', default: '10000', description: 'devices of the boot storm with a pending one-time Autop (registered besides --devices)' },
    'max-connections': { type: 'string', default: '19000', description: 'MQTT_MAX_CONNECTIONS of each gateway process (and of the single process)' },
    'pool-size': { type: 'string', default: '6', description: 'DATABASE_POOL_SIZE of each cluster process (lowered to fit max_connections)' },
    'per-fleet-process': { type: 'string', default: String(DEVICES_PER_FLEET_PROCESS), description: 'devices (sockets) per fleet process' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    'redis-url': { type: 'string', default: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379' },
  },
});
const N = Number(args.devices);
const GATEWAYS = Number(args.gateways);
const ENGINES = Number(args.engines);
const TIMEOUT_MS = Number(args.timeout) * 1000;
const STALL_MS = Number(args.stall) * 1000;
const START_RATE = Number(args['start-rate']) || undefined;
const STORM_HELLO = args['storm-hello'] !== 'none';
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const BOOT = Number(args['boot-devices']);
const RATES = args.rates === 'none' ? [] : args.rates.split(',').map(Number);
if (RATES.some((r) => !(r > 0))) throw new Error('--rates: positive numbers, comma-separated, or none');
const SWEEP_SECONDS = Number(args['sweep-seconds']);
const MAX_CONNECTIONS = Number(args['max-connections']);
const FLEET_PROCESSES = fleetProcessesFor(N, Number(args['per-fleet-process']));
const references = args.reference.split(',').filter((r) => r && r !== 'none');
const runCluster = args.only !== 'references';
const runReferences = args.only !== 'cluster';
if (!['all', 'cluster', 'references'].includes(args.only)) throw new Error('--only is all, cluster or references');
for (const r of references) if (!['single', 'mosquitto'].includes(r)) throw new Error(`unknown reference ${r} (single, mosquitto or none)`);
if (FLEET_PROCESSES > 253) throw new Error(`${FLEET_PROCESSES} fleet processes: more than the source addresses 127.0.0.2 … 127.0.0.254`);
const macs = fleetMacs('B4C5', N);
/** The boot storm's devices: registered with the fleet, first seen by the cluster in the boot storm (as in bench:provisioning). */
const bootMacs = fleetMacs('B4C5', BOOT, N);
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];

const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const counts = (c: Record<string, number>) => Object.entries(c).map(([k, n]) => `${k} × ${n}`).join(', ') || 'none';

/** One process of a deployment under test, measured over the storm. */
interface ProcessRow {
  role: string;
  pid: number;
  /** Sessions it held at the end (gateways and brokers), and where that number comes from. */
  sessions: number | null;
  rssBefore: number;
  rssAfter: number;
  cpuSeconds: number;
}

interface DeploymentResult {
  name: string;
  storm: StormResult;
  processes: ProcessRow[];
  sessionsSource: string;
  /** Warnings and errors the service logged during the storm. */
  logs: Map<string, number>;
  latency?: CommandLatency;
  sweep?: SweepStep[];
  boot?: Omit<BootStorm, 'fleet'> & { queued: number };
  restarts?: { role: string; pid: number }[];
}

const onlineViaApi = (svc: BenchService) => async () => (await svc.api('GET', '/api/v1/devices?status=online&pageSize=1')).total as number;

/** Sessions per process from `intercom_gateway_sessions{instance="host:pid",…}` on the API's /metrics; null without it. */
async function sessionsByPid(svc: BenchService): Promise<Map<number, number> | null> {
  const res = await fetch(`${svc.base}/metrics`, { headers: { authorization: `Bearer ${svc.adminToken}` } }).catch(() => null);
  if (!res?.ok) return null;
  const sessions = new Map<number, number>();
  for (const line of (await res.text()).split('\n')) {
    const m = /^intercom_gateway_sessions\{([^}]*)\}\s+(\S+)/.exec(line);
    const pid = m && /instance="[^"]*-(\d+)-[0-9a-f]+"/.exec(m[1]!);
    if (pid) sessions.set(Number(pid[1]), (sessions.get(Number(pid[1])) ?? 0) + Number(m![2]));
  }
  return sessions.size ? sessions : null;
}

/**
 * DATABASE_POOL_SIZE for `processes` processes: the requested size, lowered so that all pools together stay
 * below PostgreSQL's max_connections (less the reserved ones and those open now).
 */
async function poolSizeFor(svc: BenchService, processes: number): Promise<number> {
  const [{ max, reserved, open }] = await svc.sql(
    `select current_setting('max_connections')::int as max, current_setting('superuser_reserved_connections')::int as reserved, (select count(*)::int from pg_stat_activity where backend_type = 'client backend') as open`,
  );
  const room = max - reserved - open - 4; // the bench's own connections and some slack
  const size = Math.min(Number(args['pool-size']), Math.floor(room / processes));
  if (size < 2) throw new Error(`PostgreSQL allows ${max} connections (${open} open): not enough for ${processes} processes of the cluster`);
  log(`PostgreSQL max_connections ${max}, ${open} open: DATABASE_POOL_SIZE ${size} for ${processes} processes`);
  return size;
}

async function benchCluster(svc: BenchService): Promise<DeploymentResult> {
  // gateways + engines + one API worker + the launcher (it migrates and bootstraps)
  const poolSize = await poolSizeFor(svc, GATEWAYS + ENGINES + 2);
  const cluster = await svc.startCluster(['--gateways', String(GATEWAYS), '--engines', String(ENGINES)], {
    MQTT_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
    DATABASE_POOL_SIZE: String(poolSize),
  });
  children.push(cluster.launcher);
  const { ready } = cluster;
  const roles = new Map([[cluster.launcher.pid!, 'launcher'], ...ready.workers.map((w) => [w.pid, w.role] as const)]);
  log(`cluster ready: http ${ready.http}, mqtt ${ready.mqtt}, ws ${ready.ws}; ${ready.workers.map((w) => `${w.role} ${w.pid}`).join(', ')}; launcher ${cluster.launcher.pid}`);
  const url = `mqtt://127.0.0.1:${ready.mqtt}`;
  const online = onlineViaApi(svc);

  // 1. Storm: every device at once.
  log(`storm: ${N} devices from ${FLEET_PROCESSES} fleet processes against ${plural(GATEWAYS, 'gateway process')}`);
  const fleet = await startFleet({ url, secret: svc.secret, hello: STORM_HELLO, macs, workers: FLEET_PROCESSES, children, start: false, startPerSecond: START_RATE });
  const result = await storm(fleet, { devices: N, pids: [...roles.keys()], apiOnline: online, timeoutMs: TIMEOUT_MS, stallMs: STALL_MS, log });
  const logs = new Map(svc.logs());
  const metrics = await sessionsByPid(svc);
  const gatewayPids = ready.workers.filter((w) => w.role === 'gateway').map((w) => w.pid);
  const processes = result.processes.map((p) => ({
    ...p,
    role: roles.get(p.pid)!,
    sessions: roles.get(p.pid) !== 'gateway' ? null : metrics ? (metrics.get(p.pid) ?? 0) : result.held / gatewayPids.length,
  }));
  log(`storm ${result.endedBy}: ${result.held} of ${N} held after ${fmt(result.connectSeconds, 2)} s`);

  // 2. Command latency over every device held.
  let latency: CommandLatency | undefined;
  let sweep: SweepStep[] | undefined;
  const held = await fleet.held();
  if (held.length) {
    // The storm's first-boot provisioning runs on after the last device subscribed; latency is measured
    // on an idle engine, not behind that backlog.
    const settled = Date.now();
    if (!(await jobsSettled(svc, TIMEOUT_MS))) log('provisioning of the storm did not finish; latency is measured behind it');
    log(`first-boot provisioning finished ${fmt((Date.now() - settled) / 1000 + result.connectSeconds, 1)} s after the storm began`);
    log(`latency: ${RATE} one-time Autop/s for ${SECONDS} s over ${held.length} devices`);
    latency = await commandLatency(svc, fleet, held, RATE, SECONDS);
    if (RATES.length) {
      log(`rate sweep: ${RATES.join(', ')} jobs/s for ${SWEEP_SECONDS} s each over ${held.length} devices`);
      sweep = await rateSweep(svc, fleet, held, RATES, SWEEP_SECONDS, { maxInFlight: Number(args['max-in-flight']), log });
    }
  }
  await fleet.stop();

  // 3. Boot storm: BOOT devices never connected before, each with a pending one-time Autop, connect at once. (The
  // storm's devices would not do: a fresh simulator reports the factory configuration, which reads as a reset
  // and cancels one-time Autop.)
  if (!(await waitUntil(async () => (await online()) === 0, 120_000, 500))) log(`devices still online through the API after the fleet stopped: ${await online()}`);
  const redis = new Redis(svc.redisUrl);
  let boot: DeploymentResult['boot'];
  try {
    const [{ now }] = await svc.sql('select now() as now');
    const queued = await queueOneTimeAutop(svc, redis, `${await svc.queuePrefix()}:provisioning:delayed`, bootMacs);
    log(`boot storm: ${bootMacs.length} devices with ${queued} one-time Autop waiting`);
    const { fleet: bootFleet, ...b } = await bootStorm(svc, { url, secret: svc.secret, macs: bootMacs, workers: Math.max(4, fleetProcessesFor(BOOT)), children, timeoutMs: TIMEOUT_MS, jobsSince: now });
    await bootFleet.stop();
    boot = { ...b, queued };
    log(`boot storm: ${b.done ? 'all applied' : 'TIMED OUT'} in ${fmt(b.seconds, 2)} s`);
  } finally {
    await redis.quit();
  }
  await svc.stop();
  return { name: `cluster: ${plural(GATEWAYS, 'gateway')}, ${plural(ENGINES, 'engine')}, 1 API`, storm: result, processes, sessionsSource: metrics ? 'intercom_gateway_sessions' : 'held ÷ gateways', logs, latency, sweep, boot, restarts: cluster.restarts };
}

async function benchSingle(svc: BenchService): Promise<DeploymentResult> {
  const service = await svc.start({ MQTT_MAX_CONNECTIONS: String(MAX_CONNECTIONS) });
  children.push(service);
  const online = onlineViaApi(svc);
  if (!(await waitUntil(async () => (await online()) === 0, 60_000, 500))) log(`devices online through the API before the storm: ${await online()}`);
  log(`reference: single process (pid ${service.pid}), ${N} devices`);
  const fleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: STORM_HELLO, macs, workers: FLEET_PROCESSES, children, start: false, startPerSecond: START_RATE });
  const result = await storm(fleet, { devices: N, pids: [service.pid!], apiOnline: online, timeoutMs: TIMEOUT_MS, stallMs: STALL_MS, log });
  const logs = new Map(svc.logs());
  await fleet.stop();
  await svc.stop();
  const [p] = result.processes;
  return { name: 'single process (role all)', storm: result, processes: [{ ...p!, role: 'all', sessions: result.held }], sessionsSource: 'held', logs };
}

async function benchMosquitto(): Promise<DeploymentResult> {
  const broker = await startMosquitto(children);
  log(`reference: mosquitto (pid ${broker.pid}), ${N} devices`);
  const fleet = await startFleet({ url: broker.url, secret: null, hello: false, macs, workers: FLEET_PROCESSES, children, start: false, startPerSecond: START_RATE });
  const result = await storm(fleet, { devices: N, pids: [broker.pid], timeoutMs: TIMEOUT_MS, stallMs: STALL_MS, log });
  await fleet.stop();
  await broker.stop();
  const [p] = result.processes;
  return { name: 'mosquitto 2 (no auth)', storm: result, processes: [{ ...p!, role: 'broker', sessions: result.held }], sessionsSource: 'held', logs: new Map() };
}

function report(results: DeploymentResult[]) {
  const mb = (b: number) => fmt(b / 2 ** 20);
  const secs = (s: number | null) => (s === null ? 'n/a' : `${fmt(s, 2)} s`);
  console.log(`\n### Storm: ${N} devices at once, from ${FLEET_PROCESSES} fleet processes\n`);
  console.log('| deployment | held | ended by | until last subscribed | all online via API | connects/s | CPU (all processes) | refused attempts | failed attempts |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const s = r.storm;
    const online = s.onlineViaApiSeconds !== null ? secs(s.onlineViaApiSeconds) : s.onlineViaApi === null ? 'n/a' : `never (${s.onlineViaApi} online at the end)`;
    const cpu = r.processes.reduce((a, p) => a + p.cpuSeconds, 0);
    console.log(`| ${r.name} | ${s.held} / ${s.devices} | ${s.endedBy} | ${secs(s.connectSeconds)} | ${online} | ${fmt(s.connectsPerSecond, 0)} | ${fmt(cpu, 2)} s | ${s.fleet.refused} | ${s.fleet.failed} |`);
  }

  console.log('\n### Per process\n');
  console.log('| deployment | role | pid | sessions | RSS before → after | RSS per held session | CPU |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    for (const p of r.processes) {
      const perSession = p.sessions ? `${fmt((p.rssAfter - p.rssBefore) / p.sessions / 1024, 2)} KB` : '';
      console.log(`| ${r.name} | ${p.role} | ${p.pid} | ${p.sessions === null ? '' : `${fmt(p.sessions, 0)} (${r.sessionsSource})`} | ${mb(p.rssBefore)} → ${mb(p.rssAfter)} MB | ${perSession} | ${fmt(p.cpuSeconds, 2)} s |`);
    }
  }

  console.log('\n### Refusals and errors\n');
  console.log('| deployment | CONNACK refusals | attempts failed before CONNACK | service log (warn/error) | processes gone by the end | worker restarts |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const gone = r.processes.filter((p) => !Number.isFinite(p.rssAfter)).map((p) => `${p.role} ${p.pid}`).join(', ') || 'none';
    const restarts = r.restarts === undefined ? '' : r.restarts.length ? r.restarts.map((w) => `${w.role} → ${w.pid}`).join(', ') : 'none';
    console.log(`| ${r.name} | ${counts(r.storm.fleet.refusals)} | ${counts(r.storm.fleet.failures)} | ${counts(Object.fromEntries(r.logs))} | ${gone} | ${restarts} |`);
  }

  for (const r of results) {
    if (!r.latency && !r.boot) continue;
    console.log(`\n### ${r.name}: jobs\n`);
    console.log('| measure | p50 | p95 | p99 | jobs |');
    console.log('| --- | --- | --- | --- | --- |');
    if (r.latency) {
      const l = r.latency;
      const row = (what: string, v: number[]) => `| ${what}, ${RATE}/s for ${SECONDS} s over ${r.storm.held} devices | ${fmt(pct(v, 50))} ms | ${fmt(pct(v, 95))} ms | ${fmt(pct(v, 99))} ms | ${v.length} / ${l.count} |`;
      console.log(row('command latency to the device', l.toDevice));
      console.log(row('command latency to `succeeded`', l.toSucceeded));
      console.log(row('of which: request scheduled → job recorded (API)', l.toRecorded));
      console.log(row('of which: job recorded → first delivery (engine)', l.recordedToDelivered));
    }
    if (r.boot) {
      console.log(`| boot storm: ${BOOT} devices with a pending one-time Autop (${r.boot.queued} queued) connect at once, until all applied | ${r.boot.done ? secs(r.boot.seconds) : `TIMED OUT after ${secs(r.boot.seconds)}`} | | | ${r.boot.states.map((s) => `${s.state} ${s.n}`).join(', ')} |`);
    }
    if (r.sweep?.length) console.log(`\nRate sweep, ${SWEEP_SECONDS} s per step, at most ${args['max-in-flight']} requests open:\n\n${sweepTable(r.sweep)}\n`);
  }

  const mosquitto = results.find((r) => r.name.startsWith('mosquitto'));
  if (!mosquitto) return;
  console.log('');
  for (const r of results) {
    if (r === mosquitto) continue;
    const [a, b] = [r.storm, mosquitto.storm];
    if (a.held === b.held && a.endedBy === 'all held' && b.endedBy === 'all held') {
      console.log(`ratio ${r.name} / mosquitto, storm time with both holding all ${a.held}: ${fmt(a.connectSeconds / b.connectSeconds, 2)}×`);
      continue;
    }
    // Not the same number held: compare the time each took to hold as many as the smaller of the two held.
    const k = Math.min(a.held, b.held);
    const [ta, tb] = [secondsToHold(a, k), secondsToHold(b, k)];
    console.log(
      `${r.name} held ${a.held}, mosquitto ${b.held}: no storm-time ratio for the same number held; time to hold ${k}: ${secs(ta)} vs ${secs(tb)}${ta && tb ? ` (${fmt(ta / tb, 2)}×)` : ''}`,
    );
  }
}

await runBench(children, cleanups, async () => {
  log(`cluster benchmark: ${N} devices, ${FLEET_PROCESSES} fleet processes from 127.0.0.2 … 127.0.0.${FLEET_PROCESSES + 1}; ${runCluster ? `cluster of ${plural(GATEWAYS, 'gateway')} and ${plural(ENGINES, 'engine')}` : 'no cluster'}; references: ${runReferences ? references.join(', ') || 'none' : 'none'}`);
  const results: DeploymentResult[] = [];
  let svc: BenchService | null = null;
  if (runCluster || (runReferences && references.includes('single'))) {
    log('building the service');
    build();
    if (runCluster) assertClusterLauncher();
    svc = await benchService(args['pg-admin-url'], { REDIS_URL: args['redis-url'] });
    cleanups.push(() => svc!.cleanup());
    const setup = await svc.start();
    children.push(setup);
    const registered = runCluster ? [...macs, ...bootMacs] : macs;
    log(`service up (pid ${setup.pid}); registering ${registered.length} MACs and devices`);
    await registerFleet(svc, registered);
    await svc.stop();
  }
  if (runCluster) results.push(await benchCluster(svc!));
  if (runReferences && references.includes('single')) results.push(await benchSingle(svc!));
  if (runReferences && references.includes('mosquitto')) results.push(await benchMosquitto());
  report(results);
});
