import type { ChildProcess } from 'node:child_process';
import type { Redis } from 'ioredis';
import { startFleet, type BenchFleet } from './fleet.js';
import { sleep, waitUntil } from './proc.js';
import type { BenchService } from './service.js';
import { UNFINISHED_STATE } from '../../src/provisioning/tables.js';

/** What the job benchmarks need of a running deployment (a single process or a cluster on the same database). */
export type JobApi = Pick<BenchService, 'api' | 'sql'>;

export const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;

/** Jobs not finished yet (of one kind, or all; created since `since`, or ever). */
export async function unfinishedJobs(svc: JobApi, kind?: string, since = new Date(0)): Promise<number> {
  const rows = await svc.sql(`select count(*)::int as n from jobs where ${UNFINISHED_STATE} and created_at >= $1${kind ? ' and kind = $2' : ''}`, kind ? [since, kind] : [since]);
  return rows[0].n as number;
}

/** Waits until every job has finished; false when `timeoutMs` passed first. */
export const jobsSettled = (svc: JobApi, timeoutMs: number) => waitUntil(async () => (await unfinishedJobs(svc)) === 0, timeoutMs, 500);

/**
 * Fires `count` requests at `rate` per second with at most `maxInFlight` open at once (the API caps its
 * connections); answers each request's *scheduled* time by job id, so any queueing on this side counts
 * against the service's latency, never for it. A failed request is left out (and its first error logged).
 */
export async function fireAtRate(count: number, rate: number, request: (i: number) => Promise<string>, maxInFlight = 256): Promise<Map<string, number>> {
  const started = new Map<string, number>();
  let failed = 0;
  const t0 = performance.now();
  const wall0 = Date.now();
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
    const scheduled = wall0 + (i * 1000) / rate;
    const p: Promise<void> = request(i).then(
      (id) => void started.set(id, scheduled),
      (err) => void (failed++ || console.error('request failed:', err instanceof Error ? err.message : err)),
    );
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  }
  await Promise.all(inFlight);
  if (failed) console.error(`${failed} of ${count} requests failed`);
  return started;
}

/** Latencies in ms, sorted, from the scheduled creation of each job to the device and to `succeeded`. */
export interface CommandLatency {
  count: number;
  toDevice: number[];
  toSucceeded: number[];
  /** Where the time went: the scheduled request until the job was recorded (API), and until its first delivery (engine). */
  toRecorded: number[];
  recordedToDelivered: number[];
}

/**
 * One-time Autop at `rate` per second for `seconds`, round-robin over `macs` (online devices of `fleet`),
 * created through the API; measured until each reached its device and until it succeeded.
 */
export async function commandLatency(svc: JobApi, fleet: BenchFleet, macs: string[], rate: number, seconds: number): Promise<CommandLatency> {
  const count = rate * seconds;
  const started = await fireAtRate(count, rate, async (i) => {
    const res = await svc.api('POST', `/api/v1/devices/${macs[i % macs.length]}/autop/once`, { commands: `Config.Bench.Latency = ${i}` });
    return res.job.id as string;
  });
  await jobsSettled(svc, 120_000);
  const received = await fleet.received();
  const finishedRows = await svc.sql<{ id: string; ms: number }>(`select id, extract(epoch from finished_at) * 1000 as ms from jobs where id = any($1::uuid[]) and state = 'succeeded'`, [[...started.keys()]]);
  const steps = await svc.sql<{ id: string; created: number; delivered: number }>(
    `select j.id, extract(epoch from j.created_at) * 1000 as created,
            (select extract(epoch from min(a.at)) * 1000 from audit_log a where a.job_id = j.id and a.action = 'job.dispatched') as delivered
       from jobs j where j.id = any($1::uuid[])`,
    [[...started.keys()]],
  );
  return {
    count,
    toDevice: [...started].map(([id, t]) => (received.get(id) ?? NaN) - t).filter(Number.isFinite).sort((a, b) => a - b),
    toSucceeded: finishedRows.map((r) => Number(r.ms) - started.get(r.id)!).sort((a, b) => a - b),
    toRecorded: steps.map((r) => Number(r.created) - started.get(r.id)!).sort((a, b) => a - b),
    recordedToDelivered: steps.filter((r) => r.delivered !== null).map((r) => Number(r.delivered) - Number(r.created)).sort((a, b) => a - b),
  };
}

/** One pending one-time Autop for each MAC (devices offline), in batches of 500; waits until all are delayed in the queue. */
export async function queueOneTimeAutop(svc: JobApi, redis: Redis, delayedKey: string, macs: string[]): Promise<number> {
  const before = await redis.zcard(delayedKey);
  for (let i = 0; i < macs.length; i += 500) {
    await svc.api('POST', '/api/v1/autop/batch', { macs: macs.slice(i, i + 500), commands: `Config.Bench.Once = ${i}`, mode: 'once' });
  }
  await waitUntil(async () => (await redis.zcard(delayedKey)) >= before + macs.length, 120_000, 200);
  return (await redis.zcard(delayedKey)) - before;
}

export interface BootStorm {
  fleet: BenchFleet;
  done: boolean;
  seconds: number;
  /** One-time Autop jobs by state at the end. */
  states: { state: string; n: number }[];
}

/**
 * Every device of `macs`, each with a pending one-time Autop, connects at once; until all of them are applied.
 * The states count the one-time Autop jobs created since `jobsSince` (default: all).
 */
export async function bootStorm(svc: JobApi, opts: { url: string; secret: string; macs: string[]; workers: number; children: ChildProcess[]; timeoutMs: number; jobsSince?: Date }): Promise<BootStorm> {
  const t0 = Date.now();
  const fleet = await startFleet({ url: opts.url, secret: opts.secret, hello: true, macs: opts.macs, workers: opts.workers, children: opts.children });
  const since = opts.jobsSince ?? new Date(0);
  const done = await waitUntil(async () => (await unfinishedJobs(svc, 'autop-once', since)) === 0, opts.timeoutMs, 200);
  const seconds = (Date.now() - t0) / 1000;
  const states = await svc.sql(`select state, count(*)::int as n from jobs where kind = 'autop-once' and created_at >= $1 group by state`, [since]);
  return { fleet, done, seconds, states };
}
