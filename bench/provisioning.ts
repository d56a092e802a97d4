import type { ChildProcess } from 'node:child_process';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { fleetMacs } from '../simulators/fleet.js';
import { startBareAedes } from './lib/brokers.js';
import { startFleet } from './lib/fleet.js';
import { bootStorm, commandLatency, fireAtRate, jobsSettled, pct, queueOneTimeAutop } from './lib/jobs.js';
import { cpuSeconds, sleep, waitUntil } from './lib/proc.js';
import { benchService, build, registerFleet } from './lib/service.js';
import { rateSweep, sweepTable, type SweepStep } from './lib/sweep.js';

// npm run bench:provisioning -- [--devices 10000] [--rate 500] [--seconds 20] [--rates 250,500,1000,2000,4000] [--sweep-seconds 20]
//   --rate 0 leaves out the fixed-rate latency run and its bare-aedes floor; --rates none leaves out the sweep.
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000' },
    'latency-devices': { type: 'string', default: '5000' },
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '20' },
    workers: { type: 'string', default: '4' },
    rates: { type: 'string', default: '250,500,1000,2000,4000', description: 'rate sweep: jobs/s of each step (one request per job), or none' },
    'sweep-seconds': { type: 'string', default: '20', description: 'length of each step of the rate sweep' },
    'max-in-flight': { type: 'string', default: '512', description: 'requests open at most in the sweep; one due beyond is counted as not sent' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    'cpu-prof-dir': { type: 'string', description: 'write a V8 CPU profile of the service process here' },
  },
});
const N = Number(args.devices);
const LATENCY_DEVICES = Math.min(N, Number(args['latency-devices']));
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const WORKERS = Number(args.workers);
const RATES = args.rates === 'none' ? [] : args.rates.split(',').map(Number);
if (RATES.some((r) => !(r > 0))) throw new Error('--rates: positive numbers, comma-separated, or none');
const SWEEP_SECONDS = Number(args['sweep-seconds']);
const macs = fleetMacs('B2C5', N);
const children: ChildProcess[] = [];
const loadAverage = () => loadavg().map((l) => l.toFixed(2)).join(', ');
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

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
  const waitingJobs = await queueOneTimeAutop(svc, redis, delayed, macs);
  const memAfter = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const cpu0 = cpuSeconds(service.pid!);
  await sleep(10_000);
  const idleCpu = cpuSeconds(service.pid!) - cpu0;
  log(`${waitingJobs} jobs waiting: ${fmt((memAfter - memBefore) / waitingJobs, 0)} B of Redis each; service CPU over 10 s of waiting: ${fmt(idleCpu, 2)} s`);

  // 2. Boot storm: every device, each with a pending one-time Autop, connects at once.
  const { fleet, done: stormDone, seconds: stormSeconds, states: stormStates } = await bootStorm(svc, { url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, macs, workers: WORKERS, children, timeoutMs: 300_000 });
  log(`boot storm: ${stormDone ? 'all provisioned' : 'TIMED OUT'} in ${fmt(stormSeconds, 2)} s; one-time Autop states ${JSON.stringify(stormStates)}`);
  // let the boot provisioning of every device settle before measuring latency
  await jobsSettled(svc, 300_000);

  // 3. Batch Autop to 500 online devices.
  const batchStart = Date.now();
  const batch = await svc.api('POST', '/api/v1/autop/batch', { macs: macs.slice(0, 500), commands: 'Config.Bench.Batch = 1', mode: 'once' });
  await waitUntil(async () => (await svc.api('GET', `/api/v1/autop/batch/${batch.batchId}`)).finished, 60_000, 10);
  const batchSeconds = (Date.now() - batchStart) / 1000;
  log(`batch Autop to 500 online devices: all succeeded in ${fmt(batchSeconds, 3)} s`);

  // 4. Rate sweep: one request per job at each rate of RATES, open-loop, against the same online devices.
  let sweep: SweepStep[] = [];
  if (RATES.length) {
    log(`rate sweep: ${RATES.join(', ')} jobs/s for ${SWEEP_SECONDS} s each over ${LATENCY_DEVICES} devices (load average ${loadAverage()})`);
    sweep = await rateSweep(svc, fleet, macs.slice(0, LATENCY_DEVICES), RATES, SWEEP_SECONDS, { maxInFlight: Number(args['max-in-flight']), log, redisInfo: (section) => redis.info(section) });
    log(`rate sweep done (load average ${loadAverage()})`);
  }

  // 5. Latency at RATE commands/s for SECONDS against LATENCY_DEVICES online devices (0: not run).
  let fixed = '';
  if (RATE > 0) {
    const { count, toDevice, toSucceeded } = await commandLatency(svc, fleet, macs.slice(0, LATENCY_DEVICES), RATE, SECONDS);
    log(`latency at ${RATE}/s for ${SECONDS} s: to device p50 ${fmt(pct(toDevice, 50))} ms p99 ${fmt(pct(toDevice, 99))} ms (${toDevice.length}); to succeeded p50 ${fmt(pct(toSucceeded, 50))} ms p99 ${fmt(pct(toSucceeded, 99))} ms (${toSucceeded.length}/${count})`);
    await fleet.stop();
    await svc.stop();

    // 6. Floor: broker-only publish-to-device latency on bare aedes at the same rate.
    const broker = await startBareAedes(children);
    const floorFleet = await startFleet({ url: broker.url, secret: null, hello: false, macs: macs.slice(0, LATENCY_DEVICES), workers: WORKERS, children });
    await waitUntil(() => floorFleet.subscribed() >= LATENCY_DEVICES, 120_000, 100);
    const publisher = await mqtt.connectAsync(broker.url, { clientId: 'bench-publisher' });
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
    await broker.stop();
    fixed = `
| command latency to the device, ${RATE}/s for ${SECONDS} s, ${LATENCY_DEVICES} online devices | p50 ${fmt(pct(toDevice, 50))} ms, p99 ${fmt(pct(toDevice, 99))} ms |
| command latency to \`succeeded\`, same run | p50 ${fmt(pct(toSucceeded, 50))} ms, p99 ${fmt(pct(toSucceeded, 99))} ms |
| floor: bare aedes publish → device, same rate | p50 ${fmt(pct(floor, 50))} ms, p99 ${fmt(pct(floor, 99))} ms |`;
  } else {
    await fleet.stop();
    await svc.stop();
  }
  await redis.quit();

  console.log(`
| measure | result |
| --- | --- |
| batch Autop to 500 online devices, until all succeeded | ${fmt(batchSeconds, 3)} s |${fixed}
| boot storm: ${N} devices with a pending one-time Autop connect at once, until all applied | ${fmt(stormSeconds, 2)} s (${JSON.stringify(stormStates)}) |
| ${waitingJobs} jobs waiting for offline devices: service CPU over 10 s | ${fmt(idleCpu, 2)} s |
| same: Redis memory per waiting job | ${fmt((memAfter - memBefore) / waitingJobs, 0)} B |`);
  if (sweep.length) console.log(`\nRate sweep, ${SWEEP_SECONDS} s per step, ${LATENCY_DEVICES} online devices, at most ${args['max-in-flight']} requests open:\n\n${sweepTable(sweep)}`);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await svc.cleanup();
}
