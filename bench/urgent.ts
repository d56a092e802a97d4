import { parseArgs } from 'node:util';
import { AccountService } from '../src/accounts/service.js';
import type { JobKindHandler } from '../src/provisioning/kinds.js';
import { fleetMacs } from '../simulators/fleet.js';
import { startTestService, waitFor } from '../test/helpers/service.js';
import { fireAtRate, pct } from './lib/jobs.js';

// npm run bench:urgent -- [--devices 200] [--rate 100] [--seconds 10]
// The urgent fast path against the queue path, in one process (service and simulated devices): latency
// from a request's scheduled time to the device, for a plain kind and the same kind registered urgent, on
// idle devices; then the urgent kind while every device holds a one-time Autop of a batch in progress
// (the plain kind would wait for the batch there). Simulated devices share the service's event loop, so
// the figures compare the two paths; they are not the service's own latency.
const { values: args } = parseArgs({
  options: { devices: { type: 'string', default: '200' }, rate: { type: 'string', default: '100' }, seconds: { type: 'string', default: '10' } },
});
const D = Number(args.devices);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const fmt = (n: number) => n.toFixed(1);
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);

const teardowns: (() => unknown)[] = [];
const kinds: JobKindHandler[] = [
  { kind: 'door-urgent', urgent: true, command: async () => ({ params: {} }) },
  { kind: 'door-queued', command: async () => ({ params: {} }) },
];
try {
  const svc = await startTestService({ teardown: (fn) => void teardowns.unshift(fn) }, { LOG_LEVEL: 'warn' }, { kinds });
  const { token } = await svc.createInstaller();
  const principal = (await new AccountService(svc.service.database.db).authenticate(token))!;
  const macs = fleetMacs('B2C7', D);
  const received = new Map<string, number>();
  const devices: ReturnType<typeof svc.device>[] = [];
  for (const mac of macs) {
    await svc.addDevice(token, mac);
    const d = svc.device(mac, { behaviour: { plainKinds: ['door-urgent', 'door-queued'], holdKinds: ['autop-once'] } });
    d.on('command', (c: { id: string }) => void (received.has(c.id) || received.set(c.id, Date.now())));
    devices.push(d);
    d.start();
  }
  await waitFor(() => devices.filter((d) => d.applications.length >= 1).length, (n) => n === D, 300_000, 100);
  log(`${D} devices connected and provisioned`);

  const run = async (kind: string) => {
    const started = await fireAtRate(RATE * SECONDS, RATE, async (i) => (await svc.service.provisioning.requestJob({ principal }, macs[i % D]!, kind, {})).answer.job.id);
    await waitFor(() => [...started.keys()].filter((id) => received.has(id)).length, (n) => n === started.size, 120_000, 50);
    await waitFor(async () => Number((await svc.sql(`SELECT count(*) AS n FROM jobs WHERE state NOT IN ('succeeded','failed','expired','canceled') AND kind = $1`, [kind]))[0].n), (n) => n === 0, 120_000, 50);
    const lat = [...started].map(([id, t]) => received.get(id)! - t).sort((a, b) => a - b);
    return `p50 ${fmt(pct(lat, 50))} ms, p99 ${fmt(pct(lat, 99))} ms (${lat.length})`;
  };
  const queued = await run('door-queued');
  log(`plain kind, idle devices: ${queued}`);
  const urgent = await run('door-urgent');
  log(`urgent kind, idle devices: ${urgent}`);
  const batch = (await svc.api('POST', '/api/v1/autop/batch', { token, body: { macs, commands: 'Config.Bench.Held = 1', mode: 'once' } })).body;
  await waitFor(() => devices.filter((d) => d.holding.length === 1).length, (n) => n === D, 120_000, 50);
  const behind = await run('door-urgent');
  log(`urgent kind, every device holding a batch one-time Autop (${batch.batchId}): ${behind}`);
  for (const d of devices) for (const id of d.holding) d.release(id);
  console.log(`
| ${D} devices, ${RATE} jobs/s for ${SECONDS} s, request → device | latency |
| --- | --- |
| plain kind (the twin path), idle devices | ${queued} |
| urgent kind (the fast path), idle devices | ${urgent} |
| urgent kind, every device holding a one-time Autop in progress | ${behind} |`);
} finally {
  for (const fn of teardowns) await fn();
}
