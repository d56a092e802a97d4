import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Webhook } from 'standardwebhooks';
import { fleetMacs } from '../simulators/fleet.js';
import { startFleet } from './lib/fleet.js';
import { fireAtRate, pct } from './lib/jobs.js';
import { sleep, waitUntil } from './lib/proc.js';
import { benchService, build } from './lib/service.js';

// npm run bench:events -- [--doors 500] [--outage 10000] [--rate 1000] [--seconds 10] [--down 300]
//   [--parts doors,webhooks,outage,backlog] (a subset, to repeat one measure)
// Issue 19: a webhook receiver on loopback (200, or 500 / 429 for a share) subscribed to every event;
// simulated devices; webhook throughput and latency at `rate` events/s; 10,000 devices of one site gone
// at once (until the last device.offline and the site.outage arrive); the retry backlog after the
// receiver was down `down` seconds; door opening at idle and beside 500 jobs/s of other work.
const { values: args } = parseArgs({
  options: {
    doors: { type: 'string', default: '500' },
    outage: { type: 'string', default: '10000' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    down: { type: 'string', default: '300' },
    parts: { type: 'string', default: 'doors,webhooks,outage,backlog' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const DOORS = Number(args.doors);
const OUTAGE = Number(args.outage);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const DOWN = Number(args.down);
const GRACE_S = 5;
const PARTS = new Set(args.parts.split(','));
for (const p of PARTS) if (!['doors', 'webhooks', 'outage', 'backlog'].includes(p)) throw new Error(`unknown part: ${p}`);
const rows: string[] = [];
const children: ChildProcess[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const until = async (probe: () => Promise<boolean> | boolean, ms: number, what: string) => {
  if (!(await waitUntil(probe, ms, 50))) throw new Error(`timed out: ${what}`);
};
async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

/** The receiver: verifies every request (Standard Webhooks), keeps the first arrival of each id. */
function receiver(secret: () => string) {
  const first = new Map<string, { type: string; at: number; timestamp: number; data: any; tries: number }>();
  const tries = new Map<string, number>();
  const state = { down: false, failShare: 0.05, throttleShare: 0.02, requests: 0, rejected: 0 };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      state.requests++;
      const body = Buffer.concat(chunks).toString('utf8');
      const id = String(req.headers['webhook-id']);
      tries.set(id, (tries.get(id) ?? 0) + 1);
      if (state.down) return void res.writeHead(503).end();
      const r = Math.random();
      if (r < state.failShare) return void res.writeHead(500).end();
      if (r < state.failShare + state.throttleShare) return void res.writeHead(429, { 'retry-after': '1' }).end();
      const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
      try {
        new Webhook(secret()).verify(body, headers);
      } catch {
        state.rejected++;
        return void res.writeHead(400).end();
      }
      const e = JSON.parse(body) as { type: string; timestamp: string; data: any };
      if (!first.has(headers['webhook-id'])) first.set(headers['webhook-id'], { type: e.type, at: Date.now(), timestamp: Date.parse(e.timestamp), data: e.data, tries: tries.get(id) ?? 1 });
      res.writeHead(200).end();
    });
  });
  return { first, state, server };
}

const svc = await benchService(args['pg-admin-url'], {});
let receiverServer: import('node:http').Server | null = null;
try {
  build();
  // The benchmark is one HTTP client standing in for many: the API's per-address connection cap is off.
  children.push(await svc.start({ WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32', PRESENCE_OFFLINE_GRACE_SECONDS: String(GRACE_S), LOG_LEVEL: 'warn', HTTP_MAX_CONNECTIONS_PER_ADDRESS: '0' }, process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []));
  const created = await svc.api('POST', '/api/v1/installers', { name: 'Bench installer', email: `bench-${Date.now()}@example.com` });
  const installer = created.installer;
  const token = created.token.token as string;
  // A request whose connection the server closed under it (keep-alive's race) is sent again under the same
  // Idempotency-Key, so a job is not made twice.
  const as = async (method: string, path: string, body?: unknown) => {
    const key = randomUUID();
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(`${svc.base}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'idempotency-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : null };
      } catch (err) {
        if (attempt >= 3) throw err;
        await sleep(100 * attempt);
      }
    }
  };
  let secret = '';
  const rx = receiver(() => secret);
  receiverServer = rx.server;
  await new Promise<void>((resolve) => rx.server.listen(0, '127.0.0.1', resolve));
  const hook = (await as('POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${(rx.server.address() as AddressInfo).port}/hook` })).body;
  secret = hook.secret;

  // Door phones with a relay that opens from the cloud, placed in a site, online and provisioned; the
  // door phones also make the other work of the door part and the events of the webhook part.
  const doors = fleetMacs('C0E0', DOORS);
  const outage = PARTS.has('outage') ? fleetMacs('C0E1', OUTAGE) : [];
  await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.id}`, ['MAC', ...doors, ...outage].join('\n'), 'text/csv');
  const site = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'Doors', timeZone: 'Europe/Berlin', installerId: installer.id });
  const dark = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'Dark', timeZone: 'Europe/Berlin', installerId: installer.id });
  log(`making ${DOORS} door phones and ${outage.length} devices of one site`);
  await pool(doors, 16, async (mac) => {
    await svc.api('POST', '/api/v1/devices', { mac, name: `Door ${mac.slice(-4)}`, type: 0, relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
    await svc.api('PATCH', `/api/v1/devices/${mac}`, { siteId: site.id });
  });
  await pool(outage, 16, async (mac) => {
    await svc.api('POST', '/api/v1/devices', { mac, name: `Dev ${mac.slice(-4)}`, type: 0 });
    await svc.api('PATCH', `/api/v1/devices/${mac}`, { siteId: dark.id });
  });
  const doorFleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs: doors, workers: 1, children });
  const unfinished = async (macs: string[]) => (await svc.sql("SELECT count(*)::int AS n FROM jobs WHERE state NOT IN ('succeeded','failed','expired','canceled') AND mac = ANY($1::text[])", [macs]))[0].n as number;
  await until(async () => doorFleet.subscribed() >= DOORS && (await unfinished(doors)) === 0, 300_000, 'door phones provisioned');
  log('door phones online and provisioned');
  const testEvents = () => [...rx.first.values()].filter((e) => e.type === 'webhook.test');

  if (PARTS.has('doors')) {
    // Door opening: the request to the device (its command) and to the 200 answer.
    const openings = async (count: number, perSecond: number) => {
      const answers: number[] = [];
      const sent = new Map<string, number>();
      let refused = 0;
      await pool(Array.from({ length: count }, (_, i) => i), Math.max(1, Math.ceil(perSecond / 20)), async (i) => {
        const t0 = Date.now();
        const p0 = performance.now();
        const res = await as('POST', `/api/v1/devices/${doors[(i * 7) % DOORS]}/relays/1/open`);
        if (res.status !== 200 || res.body.outcome !== 'opened') return void refused++;
        answers.push(performance.now() - p0);
        sent.set(res.body.job.id, t0);
        await sleep(Math.max(0, 1000 / (perSecond / Math.max(1, Math.ceil(perSecond / 20))) - (performance.now() - p0)));
      });
      const received = await doorFleet.received();
      const relay = [...sent].map(([id, t]) => (received.get(id) ?? NaN) - t).filter(Number.isFinite);
      // Where the time goes: the job's own transitions (the service's clock, the same machine's).
      const steps = await svc.sql<{ job_id: string; action: string; at: Date }>('SELECT job_id, action, at FROM audit_log WHERE job_id = ANY($1::uuid[])', [[...sent.keys()]]);
      const at = (id: string, state: string) => steps.find((r) => r.job_id === id && r.action === `job.${state === 'queued' ? 'created' : state}`)?.at.getTime() ?? NaN;
      const segment = (from: (id: string) => number, to: (id: string) => number) => sorted([...sent.keys()].map((id) => to(id) - from(id)).filter(Number.isFinite));
      const segments = {
        'request → job recorded': segment((id) => sent.get(id)!, (id) => at(id, 'queued')),
        'recorded → dispatched': segment((id) => at(id, 'queued'), (id) => at(id, 'dispatched')),
        'dispatched → device': segment((id) => at(id, 'dispatched'), (id) => received.get(id) ?? NaN),
        'device → succeeded': segment((id) => received.get(id) ?? NaN, (id) => at(id, 'succeeded')),
      };
      return { answers: sorted(answers), relay: sorted(relay), refused, segments };
    };
    const breakdown = (segments: Record<string, number[]>) => Object.entries(segments).map(([k, v]) => `${k} p50 ${fmt(pct(v, 50), 1)} p99 ${fmt(pct(v, 99), 1)}`).join('; ');
    await openings(20, 20); // warm-up: the first openings after start compile their paths
    const idle = await openings(200, 20);
    log(`door opening, idle: answer p50 ${fmt(pct(idle.answers, 50), 1)} p99 ${fmt(pct(idle.answers, 99), 1)} ms; relay p50 ${fmt(pct(idle.relay, 50), 1)} p99 ${fmt(pct(idle.relay, 99), 1)} ms (${idle.answers.length}, ${idle.refused} not opened)`);
    log(`  idle: ${breakdown(idle.segments)} ms`);
    const loadSeconds = 20;
    // At most 48 requests in flight: the API takes 64 connections from one address (HTTP_MAX_CONNECTIONS_PER_ADDRESS).
    const loadStart = Date.now();
    const load = fireAtRate(500 * loadSeconds, 500, async (i) => (await as('POST', `/api/v1/devices/${doors[i % DOORS]}/autop/once`, { commands: `Config.Bench.N = ${i}` })).body.job.id, 48);
    await sleep(3000);
    // The service's event-loop delay while the openings run (prom-client's, reset at each scrape).
    const lags: { p99: number; max: number }[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const text = await fetch(`${svc.base}/metrics`).then((r) => r.text(), () => '');
        const read = (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN) * 1000;
        lags.push({ p99: read('nodejs_eventloop_lag_p99_seconds'), max: read('nodejs_eventloop_lag_max_seconds') });
        await sleep(1000);
      }
    })();
    const busy = await openings(150, 10);
    sampling = false;
    await sampler;
    const loaded = await load;
    log(`door opening beside ${fmt(loaded.size)} one-time Autop jobs at 500/s: answer p50 ${fmt(pct(busy.answers, 50), 1)} p99 ${fmt(pct(busy.answers, 99), 1)} ms; relay p50 ${fmt(pct(busy.relay, 50), 1)} p99 ${fmt(pct(busy.relay, 99), 1)} ms (${busy.answers.length}, ${busy.refused} not opened); the load reached ${fmt(loaded.size / ((Date.now() - loadStart) / 1000))} jobs/s`);
    log(`  busy: ${breakdown(busy.segments)} ms; event-loop delay per second: p99 median ${fmt(pct(sorted(lags.map((l) => l.p99)), 50), 1)} ms, max ${fmt(Math.max(...lags.map((l) => l.max)), 1)} ms`);
    await until(async () => (await unfinished(doors)) === 0, 300_000, 'load jobs finished');
    // job.finished of the load: from the transition to the receiver.
    await until(() => [...rx.first.values()].filter((e) => e.type === 'job.finished' && e.data.kind === 'autop-once').length >= loaded.size, 300_000, 'job.finished delivered');
    const jobLatency = sorted([...rx.first.values()].filter((e) => e.type === 'job.finished' && e.data.kind === 'autop-once').map((e) => e.at - Date.parse(e.data.finishedAt)));
    log(`job.finished of those jobs, transition → receiver: p50 ${fmt(pct(jobLatency, 50))} p99 ${fmt(pct(jobLatency, 99))} ms (${jobLatency.length})`);
    rows.push(
      `| door opening, idle (200, 20/s): request → device's relay / → 200 answer | p50 ${fmt(pct(idle.relay, 50), 1)} / ${fmt(pct(idle.answers, 50), 1)} ms, p99 ${fmt(pct(idle.relay, 99), 1)} / ${fmt(pct(idle.answers, 99), 1)} ms |`,
      `| door opening beside 500 one-time Autop jobs/s (150, 10/s): request → relay / → 200 | p50 ${fmt(pct(busy.relay, 50), 1)} / ${fmt(pct(busy.answers, 50), 1)} ms, p99 ${fmt(pct(busy.relay, 99), 1)} / ${fmt(pct(busy.answers, 99), 1)} ms |`,
      `| job.finished of those jobs, transition → receiver | p50 ${fmt(pct(jobLatency, 50))} ms, p99 ${fmt(pct(jobLatency, 99))} ms |`,
    );
  }

  if (PARTS.has('webhooks')) {
    // Throughput: test events at RATE/s for SECONDS, 5 % answered 500 and 2 % 429.
    const t0 = Date.now();
    const fired = await fireAtRate(RATE * SECONDS, RATE, async (i) => ((await as('POST', `/api/v1/webhooks/${hook.id}/test`)).status === 202 ? String(i) : Promise.reject(new Error('not queued'))), 48);
    await until(() => testEvents().length >= fired.size, 300_000, 'test events delivered');
    const tests = testEvents();
    const lastAt = Math.max(...tests.map((e) => e.at));
    const latency = sorted(tests.map((e) => e.at - e.timestamp));
    // Throughput: events delivered while the load was offered (the window from the first request to the last
    // first attempt), apart from the retries' tail, which the backoff sets.
    const firstTry = tests.filter((e) => e.tries === 1);
    const window = (Math.max(...firstTry.map((e) => e.at)) - t0) / 1000;
    const firstLatency = sorted(firstTry.map((e) => e.at - e.timestamp));
    log(`webhooks: ${fmt(tests.length)} events offered at ${RATE}/s; ${fmt(firstTry.length)} delivered at the first attempt within ${fmt(window, 1)} s (${fmt(firstTry.length / window)}/s), the last retry ${fmt((lastAt - t0) / 1000, 1)} s after the start; event → receiver p50 ${fmt(pct(latency, 50))} p99 ${fmt(pct(latency, 99))} ms (first attempts: p50 ${fmt(pct(firstLatency, 50))} p99 ${fmt(pct(firstLatency, 99))} ms); ${rx.state.rejected} bad signatures`);
    rows.push(`| webhooks offered at ${RATE}/s for ${SECONDS} s (5 % answered 500, 2 % 429): delivered per second at the first attempt; event → receiver, all / first attempts | ${fmt(firstTry.length / window)}/s; p50 ${fmt(pct(latency, 50))} / ${fmt(pct(firstLatency, 50))} ms, p99 ${fmt(pct(latency, 99))} / ${fmt(pct(firstLatency, 99))} ms |`);
  }

  if (PARTS.has('outage')) {
    // A site of OUTAGE devices goes dark at once.
    rx.state.failShare = 0;
    rx.state.throttleShare = 0;
    const darkFleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs: outage, workers: Math.max(1, Math.ceil(OUTAGE / 9000)), children });
    await until(async () => darkFleet.subscribed() >= OUTAGE && (await unfinished(outage)) === 0, 600_000, 'outage site online');
    const outageSet = new Set(outage);
    await until(() => [...rx.first.values()].filter((e) => e.type === 'device.online' && outageSet.has(e.data.mac)).length >= OUTAGE, 300_000, 'device.online delivered');
    log(`${OUTAGE} devices of one site online (every device.online delivered)`);
    const cut = Date.now();
    await darkFleet.stop();
    await until(() => [...rx.first.values()].filter((e) => e.type === 'device.offline' && e.data.siteId === dark.id).length >= OUTAGE && [...rx.first.values()].some((e) => e.type === 'site.outage'), 600_000, 'offline delivered');
    const offlines = [...rx.first.values()].filter((e) => e.type === 'device.offline' && e.data.siteId === dark.id);
    const lastOffline = Math.max(...offlines.map((e) => e.at)) - cut;
    const outageAt = [...rx.first.values()].find((e) => e.type === 'site.outage')!.at - cut;
    log(`site outage: last of ${fmt(offlines.length)} device.offline ${fmt(lastOffline / 1000, 1)} s after the cut, site.outage ${fmt(outageAt / 1000, 1)} s (grace ${GRACE_S} s included)`);
    rows.push(`| ${fmt(OUTAGE)} devices of one site cut at once: last device.offline / site.outage at the receiver (grace ${GRACE_S} s) | ${fmt(lastOffline / 1000, 1)} s / ${fmt(outageAt / 1000, 1)} s |`);
  }

  if (PARTS.has('backlog')) {
    // The receiver down for DOWN seconds while events flow at 50/s; then up: until the backlog is delivered.
    rx.state.failShare = 0;
    rx.state.throttleShare = 0;
    const before = testEvents().length;
    rx.state.down = true;
    const downStart = Date.now();
    const backlog = fireAtRate(50 * DOWN, 50, async (i) => ((await as('POST', `/api/v1/webhooks/${hook.id}/test`)).status === 202 ? `b${i}` : Promise.reject(new Error('not queued'))), 16);
    const offered = await backlog;
    rx.state.down = false;
    const upAt = Date.now();
    await until(() => testEvents().length >= before + offered.size, 3600_000, 'backlog delivered');
    const drained = (Date.now() - upAt) / 1000;
    log(`retry backlog: ${fmt(offered.size)} events while the receiver was down ${fmt((upAt - downStart) / 1000)} s; delivered ${fmt(drained, 1)} s after it came back`);
    rows.push(`| receiver down ${fmt(DOWN)} s with 50 events/s: backlog (${fmt(offered.size)}) delivered after it came back | ${fmt(drained, 1)} s |`);
  }

  rows.push(`| signatures the receiver could not verify | ${rx.state.rejected} |`);
  console.log(['', '| measure | result |', '| --- | --- |', ...rows].join('\n'));
  await doorFleet.stop();
  // A profile is written when the service exits on its own.
  if (process.env.BENCH_CPU_PROF) await svc.stop();
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await svc.cleanup();
  // The receiver's keep-alive connections would hold the benchmark open after its table.
  receiverServer?.closeAllConnections();
  receiverServer?.close();
}
