import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { fleetMacs } from '../simulators/fleet.js';
import { cpuSeconds, freePort, sleep, waitUntil } from './lib/proc.js';
import { startFleet } from './lib/fleet.js';
import { benchService, build, registerFleet, root } from './lib/service.js';

// npm run bench:provisioning -- [--devices 10000] [--rate 500] [--seconds 20]
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    'latency-devices': { type: 'string', default: '5000' },
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '20' },
    workers: { type: 'string', default: '4' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    'cpu-prof-dir': { type: 'string', description: 'write a V8 CPU profile of the service process here' },
  },
});
const N = Number(args.devices);
const LATENCY_DEVICES = Math.min(N, Number(args['latency-devices']));
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const WORKERS = Number(args.workers);
const macs = fleetMacs('B2C5', N);
const children: ChildProcess[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

/**
 * Fires `count` requests at `rate` per second with at most `maxInFlight` open at once (the API caps its
 * connections); answers each request's *scheduled* time by job id, so any queueing on this side counts
 * against the service's latency, never for it.
 */
async function fireAtRate(count: number, rate: number, request: (i: number) => Promise<string>, maxInFlight = 256): Promise<Map<string, number>> {
  const started = new Map<string, number>();
  const t0 = performance.now();
  const wall0 = Date.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
    const scheduled = wall0 + (i * 1000) / rate;
    const p: Promise<void> = request(i).then((id) => void started.set(id, scheduled));
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }
  await Promise.all(inFlight);
  return started;
}

const svc = await benchService(args['pg-admin-url']);
try {
  log('building the service');
  build();
  const service = await svc.start({}, args['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof-dir']}`] : []);
  children.push(service);
  log(`registering ${N} devices`);
  await registerFleet(svc, macs);
  const redis = new Redis('redis://127.0.0.1:6379');
  const delayed = `${await svc.queuePrefix()}:provisioning:delayed`;

  // 1. Jobs waiting for offline devices: one one-time Autop for each of the N devices, none online.
  const memBefore = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  for (let i = 0; i < N; i += 500) {
    await svc.api('POST', '/api/v1/autop/batch', { macs: macs.slice(i, i + 500), commands: `Config.Bench.Once = ${i}`, mode: 'once' });
  }
  await waitUntil(async () => (await redis.zcard(delayed)) >= N, 120_000, 200);
  const memAfter = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const waitingJobs = await redis.zcard(delayed);
  const cpu0 = cpuSeconds(service.pid!);
  await sleep(10_000);
  const idleCpu = cpuSeconds(service.pid!) - cpu0;
  log(`${waitingJobs} jobs waiting: ${fmt((memAfter - memBefore) / waitingJobs, 0)} B of Redis each; service CPU over 10 s of waiting: ${fmt(idleCpu, 2)} s`);

  // 2. Boot storm: every device, each with a pending one-time Autop, connects at once.
  const stormStart = Date.now();
  const fleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs, workers: WORKERS, children });
  const pendingOnce = async () => (await svc.sql(`select count(*)::int as n from jobs where kind = 'autop-once' and state not in ('succeeded','failed','expired','canceled')`))[0].n as number;
  const stormDone = await waitUntil(async () => (await pendingOnce()) === 0, 300_000, 200);
  const stormSeconds = (Date.now() - stormStart) / 1000;
  const stormStates = await svc.sql(`select state, count(*)::int as n from jobs where kind = 'autop-once' group by state`);
  log(`boot storm: ${stormDone ? 'all provisioned' : 'TIMED OUT'} in ${fmt(stormSeconds, 2)} s; one-time Autop states ${JSON.stringify(stormStates)}`);
  // let the boot provisioning of every device settle before measuring latency
  await waitUntil(async () => (await svc.sql(`select count(*)::int as n from jobs where state not in ('succeeded','failed','expired','canceled')`))[0].n === 0, 300_000, 500);

  // 3. Batch Autop to 500 online devices.
  const batchStart = Date.now();
  const batch = await svc.api('POST', '/api/v1/autop/batch', { macs: macs.slice(0, 500), commands: 'Config.Bench.Batch = 1', mode: 'once' });
  await waitUntil(async () => (await svc.api('GET', `/api/v1/autop/batch/${batch.batchId}`)).finished, 60_000, 10);
  const batchSeconds = (Date.now() - batchStart) / 1000;
  log(`batch Autop to 500 online devices: all succeeded in ${fmt(batchSeconds, 3)} s`);

  // 4. Latency at RATE commands/s for SECONDS against LATENCY_DEVICES online devices.
  const count = RATE * SECONDS;
  const started = await fireAtRate(count, RATE, async (i) => {
    const mac = macs[i % LATENCY_DEVICES]!;
    const res = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { commands: `Config.Bench.Latency = ${i}` });
    return res.job.id as string;
  });
  await waitUntil(async () => (await svc.sql(`select count(*)::int as n from jobs where state not in ('succeeded','failed','expired','canceled')`))[0].n === 0, 120_000, 200);
  const received = await fleet.received();
  const finishedRows = await svc.sql<{ id: string; ms: number }>(`select id, extract(epoch from finished_at) * 1000 as ms from jobs where id = any($1::uuid[]) and state = 'succeeded'`, [[...started.keys()]]);
  const toDevice = [...started].map(([id, t]) => (received.get(id) ?? NaN) - t).filter(Number.isFinite).sort((a, b) => a - b);
  const toSucceeded = finishedRows.map((r) => Number(r.ms) - started.get(r.id)!).sort((a, b) => a - b);
  log(`latency at ${RATE}/s for ${SECONDS} s: to device p50 ${fmt(pct(toDevice, 50))} ms p99 ${fmt(pct(toDevice, 99))} ms (${toDevice.length}); to succeeded p50 ${fmt(pct(toSucceeded, 50))} ms p99 ${fmt(pct(toSucceeded, 99))} ms (${toSucceeded.length}/${count})`);
  await fleet.stop();
  await svc.stop();

  // 5. Floor: broker-only publish-to-device latency on bare aedes at the same rate.
  const port = await freePort();
  const broker = fork(join(root, 'bench/lib/bare-aedes.ts'), [String(port)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(broker);
  await new Promise((r) => broker.once('message', r));
  const floorFleet = await startFleet({ url: `mqtt://127.0.0.1:${port}`, secret: null, hello: false, macs: macs.slice(0, LATENCY_DEVICES), workers: WORKERS, children });
  await waitUntil(() => floorFleet.subscribed() >= LATENCY_DEVICES, 120_000, 100);
  const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'bench-publisher' });
  const floorStarted = await fireAtRate(count, RATE, async (i) => {
    const id = `floor-${i}`;
    await publisher.publishAsync(`devices/${macs[i % LATENCY_DEVICES]}/commands`, JSON.stringify({ id, kind: 'noop', params: {} }), { qos: 1 });
    return id;
  });
  await sleep(2000);
  const floorReceived = await floorFleet.received();
  const floor = [...floorStarted].map(([id, t]) => (floorReceived.get(id) ?? NaN) - t).filter(Number.isFinite).sort((a, b) => a - b);
  log(`floor (bare aedes publish → device) p50 ${fmt(pct(floor, 50))} ms p99 ${fmt(pct(floor, 99))} ms (${floor.length}/${count})`);
  await publisher.endAsync();
  await floorFleet.stop();
  broker.kill('SIGTERM');
  await redis.quit();

  console.log(`
| measure | result |
| --- | --- |
| batch Autop to 500 online devices, until all succeeded | ${fmt(batchSeconds, 3)} s |
| command latency to the device, ${RATE}/s for ${SECONDS} s, ${LATENCY_DEVICES} online devices | p50 ${fmt(pct(toDevice, 50))} ms, p99 ${fmt(pct(toDevice, 99))} ms |
| command latency to \`succeeded\`, same run | p50 ${fmt(pct(toSucceeded, 50))} ms, p99 ${fmt(pct(toSucceeded, 99))} ms |
| floor: bare aedes publish → device, same rate | p50 ${fmt(pct(floor, 50))} ms, p99 ${fmt(pct(floor, 99))} ms |
| boot storm: ${N} devices with a pending one-time Autop connect at once, until all applied | ${fmt(stormSeconds, 2)} s (${JSON.stringify(stormStates)}) |
| ${waitingJobs} jobs waiting for offline devices: service CPU over 10 s | ${fmt(idleCpu, 2)} s |
| same: Redis memory per waiting job | ${fmt((memAfter - memBefore) / waitingJobs, 0)} B |`);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await svc.cleanup();
}
