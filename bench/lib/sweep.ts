import http from 'node:http';
import type { BenchFleet } from './fleet.js';
import { jobsSettled, pct, type JobApi } from './jobs.js';

/** One step of a rate sweep: what was asked, what the service took, and how fast its jobs went. */
export interface SweepStep {
  rate: number;
  seconds: number;
  /** Requests due in the step. */
  asked: number;
  /** Due while `maxInFlight` requests were open: never sent (the generator stays open-loop). */
  notSent: number;
  /** Sent and answered with an error (or no answer). */
  failed: number;
  /** Answered with a job. */
  accepted: number;
  /** Jobs accepted per second of the step's sending window. */
  achieved: number;
  /** Latencies (ms, sorted) from each request's scheduled time to the device and to `succeeded`. */
  toDevice: number[];
  toSucceeded: number[];
  /** Jobs of the step not finished when the settling timeout passed. */
  unsettled: boolean;
  /** First error answered, for the log. */
  firstError?: string;
  /** Redis commands per accepted job over the step and its settling (all of Redis: other deployments count too). */
  redisPerJob?: string;
  /** PostgreSQL transactions of the benchmark's database per accepted job, over the step and its settling. */
  pgTransactionsPerJob: number;
}

/** Options of a sweep: requests open at most, and how long a step's jobs may take to settle. */
export interface SweepOptions {
  maxInFlight?: number;
  /** Keep-alive connections the requests share (the API takes 64 per source address by default). */
  sockets?: number;
  settleMs?: number;
  log?: (...a: unknown[]) => void;
  /** Redis `INFO commandstats` of the deployment's Redis: each step logs the commands it cost per job. */
  redisInfo?: (section: string) => Promise<string>;
}

/** Calls per command from `INFO commandstats`. */
function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1]!, Number(m[2]));
  return calls;
}

/** A keep-alive POST with a bearer token; answers the status and the parsed body. */
function poster(base: string, token: string, maxSockets: number) {
  const url = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  const post = (path: string, body: unknown) =>
    new Promise<{ status: number; json: any }>((resolve, reject) => {
      const payload = JSON.stringify(body);
      const req = http.request(
        { host: url.hostname, port: url.port, path, method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let json: any = null;
            try {
              json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {}
            resolve({ status: res.statusCode ?? 0, json });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  return { post, close: () => agent.destroy() };
}

/**
 * Open-loop load: one-time Autop requests (one per job) at `rate` per second for `seconds`, round-robin over
 * `macs`. A request is due at its scheduled time whatever happened before; when `maxInFlight` are open it is
 * counted as not sent instead of waiting (a closed loop would slow down with the service and hide its queue).
 */
async function step(svc: JobApi & { base: string; adminToken: string }, fleet: BenchFleet, macs: string[], rate: number, seconds: number, offset: number, opts: Required<Omit<SweepOptions, 'redisInfo'>> & Pick<SweepOptions, 'redisInfo'>): Promise<SweepStep> {
  const asked = Math.round(rate * seconds);
  const statsBefore = opts.redisInfo ? commandCalls(await opts.redisInfo('commandstats')) : null;
  const xacts = async () => Number((await svc.sql<{ n: string }>('select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()'))[0]!.n);
  const xacts0 = await xacts();
  const { post, close } = poster(svc.base, svc.adminToken, Math.min(opts.sockets, opts.maxInFlight));
  const scheduled = new Map<string, number>();
  let inFlight = 0;
  let notSent = 0;
  let failed = 0;
  let firstError: string | undefined;
  let lastAnswer = 0;
  const open: Promise<void>[] = [];
  const send = (i: number, at: number) => {
    inFlight++;
    const p = post(`/api/v1/devices/${macs[(offset + i) % macs.length]}/autop/once`, { commands: `Config.Bench.Sweep = ${offset + i}` }).then(
      (r) => {
        if (r.status < 300 && r.json?.job?.id) scheduled.set(r.json.job.id, at);
        else (failed++, (firstError ??= `${r.status} ${JSON.stringify(r.json)?.slice(0, 200)}`));
      },
      (err) => void (failed++, (firstError ??= err instanceof Error ? err.message : String(err))),
    ).finally(() => {
      inFlight--;
      lastAnswer = Date.now();
    });
    open.push(p);
  };
  const wall0 = Date.now() + 5;
  const t0 = performance.now() + 5;
  let next = 0;
  await new Promise<void>((done) => {
    const tick = () => {
      const now = performance.now();
      // Every request due by now goes out in this tick, or is counted as not sent.
      while (next < asked && t0 + (next * 1000) / rate <= now) {
        if (inFlight < opts.maxInFlight) send(next, wall0 + (next * 1000) / rate);
        else notSent++;
        next++;
      }
      if (next >= asked) return done();
      const wait = t0 + (next * 1000) / rate - performance.now();
      if (wait > 1) setTimeout(tick, Math.min(wait, 50));
      else setImmediate(tick);
    };
    tick();
  });
  await Promise.all(open);
  close();
  const window = Math.max(seconds, (lastAnswer - wall0) / 1000);
  const unsettled = !(await jobsSettled(svc, opts.settleMs));
  // Every statement outside a transaction is one: per job, all processes of the deployment (and this benchmark's polls).
  const pgTransactionsPerJob = scheduled.size ? ((await xacts()) - xacts0) / scheduled.size : NaN;
  let redisPerJob: string | undefined;
  if (statsBefore && scheduled.size) {
    const after = commandCalls(await opts.redisInfo!('commandstats'));
    const per = [...after].map(([cmd, n]) => [cmd, (n - (statsBefore.get(cmd) ?? 0)) / scheduled.size] as const).filter(([, n]) => n >= 0.05).sort((a, b) => b[1] - a[1]);
    redisPerJob = per.map(([cmd, n]) => `${cmd} ${n.toFixed(2)}`).join(', ');
  }
  const ids = [...scheduled.keys()];
  const received = await fleet.received();
  const finished = ids.length ? await svc.sql<{ id: string; ms: number }>(`select id, extract(epoch from finished_at) * 1000 as ms from jobs where id = any($1::uuid[]) and state = 'succeeded'`, [ids]) : [];
  return {
    rate,
    seconds,
    asked,
    notSent,
    failed,
    accepted: scheduled.size,
    achieved: scheduled.size / window,
    toDevice: ids.map((id) => (received.get(id) ?? NaN) - scheduled.get(id)!).filter(Number.isFinite).sort((a, b) => a - b),
    toSucceeded: finished.map((r) => Number(r.ms) - scheduled.get(r.id)!).sort((a, b) => a - b),
    unsettled,
    firstError,
    redisPerJob,
    pgTransactionsPerJob,
  };
}

/** Runs one step per rate, each after the previous one's jobs settled. */
export async function rateSweep(svc: JobApi & { base: string; adminToken: string }, fleet: BenchFleet, macs: string[], rates: number[], seconds: number, options: SweepOptions = {}): Promise<SweepStep[]> {
  const opts = { maxInFlight: options.maxInFlight ?? 512, sockets: options.sockets ?? 48, settleMs: options.settleMs ?? 180_000, log: options.log ?? (() => {}), redisInfo: options.redisInfo };
  const steps: SweepStep[] = [];
  let offset = 0;
  for (const rate of rates) {
    const s = await step(svc, fleet, macs, rate, seconds, offset, opts);
    offset += s.asked;
    steps.push(s);
    opts.log(`sweep ${rate}/s: ${s.accepted}/${s.asked} accepted (${s.notSent} not sent, ${s.failed} failed${s.firstError ? `: ${s.firstError}` : ''}), achieved ${s.achieved.toFixed(0)}/s; device p50 ${pct(s.toDevice, 50).toFixed(1)} p99 ${pct(s.toDevice, 99).toFixed(1)} ms; succeeded p50 ${pct(s.toSucceeded, 50).toFixed(1)} p99 ${pct(s.toSucceeded, 99).toFixed(1)} ms${s.unsettled ? ' (NOT SETTLED)' : ''}; PostgreSQL transactions per job ${s.pgTransactionsPerJob.toFixed(1)}${s.redisPerJob ? `; Redis commands per job: ${s.redisPerJob}` : ''}`);
  }
  return steps;
}

/**
 * The knee: the lowest rate whose p99 to `succeeded` passes `limitMs`, or where the service took less than
 * 90 % of the asked rate (requests not sent or refused have no latency, but they are past the knee too).
 */
export function knee(steps: SweepStep[], limitMs = 100): number | null {
  for (const s of steps) if (!(pct(s.toSucceeded, 99) <= limitMs) || s.accepted < 0.9 * s.asked) return s.rate;
  return null;
}

const ms = (n: number) => (Number.isFinite(n) ? (n >= 10_000 ? `${(n / 1000).toFixed(1)} s` : `${n.toFixed(1)} ms`) : 'n/a');

/** The sweep as a markdown table, with its knee. */
export function sweepTable(steps: SweepStep[], limitMs = 100): string {
  const rows = steps.map(
    (s) =>
      `| ${s.rate} | ${s.achieved.toFixed(0)} | ${s.accepted} / ${s.asked} (${s.notSent} not sent, ${s.failed} failed) | ${ms(pct(s.toDevice, 50))} | ${ms(pct(s.toDevice, 99))} | ${ms(pct(s.toSucceeded, 50))} | ${ms(pct(s.toSucceeded, 99))}${s.unsettled ? ' (not settled)' : ''} |`,
  );
  const k = knee(steps, limitMs);
  return [
    '| asked jobs/s | achieved jobs/s | accepted | to device p50 | to device p99 | to `succeeded` p50 | to `succeeded` p99 |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
    '',
    `knee (p99 to \`succeeded\` over ${limitMs} ms, or under 90 % accepted): ${k === null ? `none up to ${steps.at(-1)?.rate ?? 0}/s` : `${k}/s`}`,
  ].join('\n');
}
