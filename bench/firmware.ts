import type { ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { firmwareImage } from '../simulators/firmware-image.js';
import { fleetMacs } from '../simulators/fleet.js';
import { cpuSeconds, rssBytes, sleep } from './lib/proc.js';
import { startFleet } from './lib/fleet.js';
import { benchService, build, registerFleet } from './lib/service.js';

// npm run bench:firmware -- [--devices 1000] [--mib 8] [--workers 4]
// 1,000 simulated devices upgrade to an 8 MiB image at once with the download cap at its default (200).
const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    mib: { type: 'string', default: '8' },
    workers: { type: 'string', default: '4' },
    'node-args': { type: 'string', default: '', description: 'extra node flags for the service process (e.g. --max-semi-space-size=4)' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(args.devices);
const SIZE = Number(args.mib) * 1024 * 1024;
const WORKERS = Number(args.workers);
const FROM = '29.30.10.112';
const TO = '29.30.99.1';
const macs = fleetMacs('F2C5', N);
const children: ChildProcess[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const MB = 1024 * 1024;

/** How fast this machine reads the same image file from disk (page cache included): the serving limit. */
async function diskReadMBps(path: string, seconds = 3): Promise<number> {
  const started = performance.now();
  let bytes = 0;
  while (performance.now() - started < seconds * 1000) {
    for await (const chunk of createReadStream(path, { highWaterMark: 256 * 1024 })) bytes += (chunk as Buffer).length;
  }
  return bytes / MB / ((performance.now() - started) / 1000);
}

build();
const svc = await benchService(args['pg-admin-url']!);
try {
  const service = await svc.start({}, args['node-args'] ? args['node-args'].split(' ') : []);
  const pid = service.pid!;
  log(`service up (pid ${pid}); registering ${N} devices`);
  await registerFleet(svc, macs);

  const image = firmwareImage('R29', TO, SIZE);
  const form = new FormData();
  form.set('model', 'R29');
  form.set('version', TO);
  form.set('file', new Blob([image]), `r29-${TO}.bin`);
  const uploadStarted = performance.now();
  const uploaded = await fetch(`${svc.base}/api/v1/firmware`, { method: 'POST', headers: { authorization: `Bearer ${svc.adminToken}` }, body: form });
  const fw = (await uploaded.json()) as { id: string; sha256: string };
  if (uploaded.status !== 201) throw new Error(`upload: ${uploaded.status} ${JSON.stringify(fw)}`);
  log(`uploaded ${args.mib} MiB image in ${fmt(performance.now() - uploadStarted, 0)} ms`);

  // The fleet, in worker processes from 127.0.0.2.. as in the other benchmarks.
  const fleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs, workers: WORKERS, children });
  const workers = fleet.workers;

  // Settled: every device connected, said hello (firmware recorded) and got its boot provisioning.
  for (let i = 0; ; i++) {
    const known = (await svc.sql<{ n: number }>(`SELECT count(*)::int AS n FROM devices WHERE firmware = $1`, [FROM]))[0]!.n;
    const open = (await svc.sql<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE state NOT IN ('succeeded','failed','expired','canceled')`))[0]!.n;
    if (known === N && open === 0) break;
    if (i > 600) throw new Error(`fleet did not settle: ${known} devices known, ${open} jobs open`);
    await sleep(500);
  }
  log('fleet connected and provisioned');
  const rssSamples: number[] = [];
  for (let i = 0; i < 10; i++) {
    rssSamples.push(rssBytes(pid));
    await sleep(100);
  }
  const rssBefore = Math.max(...rssSamples);
  const diskMBps = await diskReadMBps(join(svc.dataDir, 'firmware', `${fw.id}.bin`));
  log(`reading the image from disk: ${fmt(diskMBps, 0)} MB/s`);

  const cpuBefore = cpuSeconds(pid);
  const fleetCpuBefore = workers.reduce((a, w) => a + cpuSeconds(w.pid!), 0);
  const started = performance.now();
  const created = await svc.api('POST', '/api/v1/upgrades', { firmwareId: fw.id, macs });
  let rssPeak = rssBefore;
  let downloadedAt = 0;
  let lastLog = 0;
  for (;;) {
    rssPeak = Math.max(rssPeak, rssBytes(pid));
    const [c] = await svc.sql<{ done: number; past_download: number; failed: number }>(
      `SELECT count(*) FILTER (WHERE state IN ('succeeded','failed','expired','canceled'))::int AS done,
              count(*) FILTER (WHERE state IN ('succeeded','failed','expired','canceled') OR stage IN ('installing','rebooting'))::int AS past_download,
              count(*) FILTER (WHERE state IN ('failed','expired'))::int AS failed
       FROM jobs WHERE batch_id = $1`,
      [created.id],
    );
    if (!downloadedAt && c!.past_download === N) downloadedAt = performance.now();
    if (performance.now() - lastLog > 5000) {
      log(`${c!.past_download}/${N} downloaded, ${c!.done}/${N} finished, rss ${fmt(rssBytes(pid) / MB)} MB`);
      lastLog = performance.now();
    }
    if (c!.done === N) break;
    if (performance.now() - started > 600_000) throw new Error('upgrade did not finish in 10 minutes');
    await sleep(100);
  }
  const total = (performance.now() - started) / 1000;
  const downloadPhase = ((downloadedAt || performance.now()) - started) / 1000;
  const cpu = cpuSeconds(pid) - cpuBefore;
  const fleetCpu = workers.reduce((a, w) => a + cpuSeconds(w.pid!), 0) - fleetCpuBefore;
  const detail = await svc.api('GET', `/api/v1/upgrades/${created.id}`);
  const downloads = await fleet.ask<{ byStatus: Record<string, number>; bytes: number; firmware: string[] }>('downloads');
  const byStatus: Record<string, number> = {};
  for (const d of downloads) for (const [k, v] of Object.entries(d.byStatus)) byStatus[k] = (byStatus[k] ?? 0) + v;
  const bytes = downloads.reduce((a, d) => a + d.bytes, 0);
  const onNew = downloads.flatMap((d) => d.firmware).filter((f) => f === TO).length;
  const throughput = bytes / MB / downloadPhase;

  console.log(`\n## bench:firmware — ${N} devices, ${args.mib} MiB image, download cap 200 (default)\n`);
  console.log('| measure | result |');
  console.log('|---|---|');
  console.log(`| upgrade, POST to every device finished | ${fmt(total)} s |`);
  console.log(`| devices succeeded / failed (API) | ${detail.succeeded} / ${detail.failed} |`);
  console.log(`| devices reporting the new version (simulators) | ${onNew} |`);
  console.log(`| download phase (POST to last device past downloading) | ${fmt(downloadPhase)} s |`);
  console.log(`| bytes served | ${fmt(bytes / MB, 0)} MiB |`);
  console.log(`| aggregate download throughput | ${fmt(throughput, 0)} MB/s |`);
  console.log(`| reading the same file from disk, same run (the limit) | ${fmt(diskMBps, 0)} MB/s |`);
  console.log(`| throughput / disk read | ${fmt(throughput / diskMBps, 2)} |`);
  console.log(`| download requests by status | ${Object.entries(byStatus).map(([k, v]) => `${k}: ${v}`).join(', ')} |`);
  console.log(`| service RSS before | ${fmt(rssBefore / MB)} MB |`);
  console.log(`| service RSS peak during | ${fmt(rssPeak / MB)} MB (growth ${fmt((rssPeak - rssBefore) / MB)} MB; target < 100 MB) |`);
  console.log(`| service CPU during the upgrade | ${fmt(cpu)} CPU-s (${fmt(cpu / total, 2)} cores) |`);
  console.log(`| simulated fleet CPU (download + SHA-256) | ${fmt(fleetCpu)} CPU-s (${fmt(fleetCpu / total, 2)} cores) |`);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await svc.cleanup();
}
