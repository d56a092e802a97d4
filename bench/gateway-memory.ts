import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fleetMacs } from '../simulators/fleet.js';
import { startFleet } from './lib/fleet.js';
import { rssBytes, runBench, sleep, waitUntil } from './lib/proc.js';
import { benchService, build, root } from './lib/service.js';

// What a held session costs the gateway process: RSS, and, with --heap, what the V8 heap holds per session
// (a snapshot before and after the sessions, compared by constructor).
// npm run bench:gateway-memory -- --devices 5000 [--workers 4] [--heap]
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '5000' },
    workers: { type: 'string', default: '4' },
    heap: { type: 'boolean', default: false },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(args.devices);
const WORKERS = Number(args.workers);
const macs = fleetMacs('B4C5', N);
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);

/** Self size and count per node (type and constructor name) of a heap snapshot. */
function heapByConstructor(file: string): Map<string, { count: number; bytes: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] };
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [TYPE, NAME, SIZE] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const out = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + TYPE!]!]!;
    const name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[snap.nodes[i + NAME!]!]!.slice(0, 60) : '';
    const key = `${type} ${name}`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += snap.nodes[i + SIZE!]!;
    out.set(key, e);
  }
  return out;
}

/** V8 heap used and reserved, and memory outside it (Buffers), from the process's /metrics. */
async function heapFigures(base: string, token: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const pick = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { heapUsed: pick('nodejs_heap_size_used_bytes'), heapTotal: pick('nodejs_heap_size_total_bytes'), external: pick('nodejs_external_memory_bytes'), rss: pick('process_resident_memory_bytes') };
}
const mb = (f: Record<string, number>) => Object.entries(f).map(([k, v]) => `${k} ${(v / 2 ** 20).toFixed(1)} MB`).join(', ');

/** Asks the process for a heap snapshot (SIGUSR2: --heapsnapshot-signal) and waits until it is written. */
async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')));
  process.kill(pid, 'SIGUSR2');
  let file = '';
  await waitUntil(() => {
    const f = readdirSync(dir).find((x) => x.endsWith('.heapsnapshot') && !before.has(x));
    if (!f) return false;
    file = join(dir, f);
    return true;
  }, 120_000, 200);
  // Written once it parses (the file appears when writing begins).
  for (let i = 0; i < 240; i++) {
    await sleep(500);
    try {
      JSON.parse(readFileSync(file, 'utf8'));
      return file;
    } catch {
      /* still being written */
    }
  }
  throw new Error(`heap snapshot ${file} was not completed`);
}

await runBench(children, cleanups, async () => {
  build();
  const svc = await benchService(args['pg-admin-url'], { MQTT_MAX_CONNECTIONS: String(Math.max(N + 100, 19_000)), MQTT_MAX_CONNECTIONS_PER_ADDRESS: '0' });
  cleanups.push(() => svc.cleanup());
  const dir = join(root, `.heap-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  const service = await svc.start({}, args.heap ? [`--heapsnapshot-signal=SIGUSR2`, `--diagnostic-dir=${dir}`] : []);
  children.push(service);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const installer = await svc.api('POST', '/api/v1/installers', { name: 'Memory bench', email: `mem-${randomBytes(4).toString('hex')}@example.com` });
  await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.installer.id}`, ['MAC', ...macs].join('\n'), 'text/csv');
  await sleep(3000);
  const heapBefore = args.heap ? heapByConstructor(await snapshot(service.pid!, dir)) : null;
  await sleep(2000);
  const rssBefore = rssBytes(service.pid!);
  const figuresBefore = await heapFigures(svc.base, svc.adminToken);
  log(`before: ${mb(figuresBefore)}`);
  const fleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs, workers: WORKERS, children, start: false });
  const t0 = fleet.start();
  await waitUntil(() => fleet.subscribed() >= N, 600_000, 200);
  log(`${fleet.subscribed()} held after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  await sleep(10_000);
  const rssAfter = rssBytes(service.pid!);
  const figuresAfter = await heapFigures(svc.base, svc.adminToken);
  log(`after: ${mb(figuresAfter)}; per held session: ${Object.keys(figuresAfter).map((k) => `${k} ${((figuresAfter[k]! - figuresBefore[k]!) / N).toFixed(0)} B`).join(', ')}`);
  log(`RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MB: ${((rssAfter - rssBefore) / fleet.subscribed() / 1024).toFixed(2)} KB per held session`);
  if (heapBefore) {
    const heapAfter = heapByConstructor(await snapshot(service.pid!, dir));
    log(`RSS after the snapshot's collection: ${(rssBytes(service.pid!) / 2 ** 20).toFixed(1)} MB`);
    const rows = [...heapAfter].map(([k, a]) => {
      const b = heapBefore.get(k) ?? { count: 0, bytes: 0 };
      return { k, count: a.count - b.count, bytes: a.bytes - b.bytes };
    });
    const total = rows.reduce((s, r) => s + r.bytes, 0);
    log(`V8 heap (live, after collection): +${(total / N).toFixed(0)} B per session`);
    console.log('| node (type, constructor) | per session | bytes per session |\n| --- | --- | --- |');
    for (const r of rows.sort((x, y) => y.bytes - x.bytes).slice(0, 40)) console.log(`| ${r.k} | ${(r.count / N).toFixed(2)} | ${(r.bytes / N).toFixed(0)} |`);
  }
  await fleet.stop();
  await svc.stop();
});
