import { parseArgs } from 'node:util';
import { deriveDeviceKey } from '../src/devices/device-key.js';
import { writeXlsx, XLSX_TYPE } from '../src/shared/xlsx.js';
import { RawMqtt } from '../test/helpers/raw-mqtt.js';
import { repeatedPart, withSheet } from '../test/helpers/zip.js';
import { rssBytes, runBench, sleep } from './lib/proc.js';
import { benchService, build } from './lib/service.js';

// npm run bench:spreadsheets: hostile and large resident templates against the built service (its own
// process), and what a door phone and a load balancer see meanwhile: each upload's answer and time, the
// latency of /readyz and of an MQTT CONNECT repeated one after another while it runs, the service's RSS.
const { values: args } = parseArgs({
  options: {
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
    'no-build': { type: 'boolean', default: false },
  },
});
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const HEAD = '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>';
const TAIL = '</sheetData></worksheet>';
const ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row>';
const MAC = '0C11BE000001';

const svc = await benchService(args['pg-admin-url']);
await runBench([], [() => svc.cleanup()], async () => {
  if (!args['no-build']) build();
  const child = await svc.start();
  const { installer } = await svc.api('POST', '/api/v1/installers', { name: 'Bench installer', email: `bench-${Date.now()}@example.com` });
  await svc.api('POST', '/api/v1/mac-library', { mac: MAC, installerId: installer.id });
  await svc.api('POST', '/api/v1/devices', { mac: MAC, name: 'Gate', type: 0 });
  const site = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'Bench site', timeZone: 'Europe/Berlin', installerId: installer.id });

  const base = await writeXlsx('Residents', [['Building', 'Apt']]);
  const template = [['Building', 'Apt', 'FirstName', 'LastName', 'Email']];
  for (let i = 0; i < 20_000; i++) template.push([`Tower ${i % 10}`, String(1000 + i), `First${i}`, `Last${i}`, `p${i}@example.com`]);
  const files: [string, Buffer][] = [
    ['149 MB sheet1.xml (honest header)', withSheet(base, repeatedPart('s', ROW, 149 * 1024 * 1024, undefined, HEAD, TAIL))],
    ['149 MB sheet1.xml (header says 4 KiB)', withSheet(base, repeatedPart('s', ROW, 149 * 1024 * 1024, 4096, HEAD, TAIL))],
    ['150 MB of whitespace', withSheet(base, repeatedPart('s', ' ', 150 * 1024 * 1024, undefined, HEAD, TAIL))],
    ['20 MiB sheet, one row (valid, slow)', withSheet(base, repeatedPart('s', ROW, 20 * 1024 * 1024, undefined, HEAD, TAIL), { last: true })],
    ['20,000-row template (valid)', await writeXlsx('Residents', template)],
  ];

  for (const [name, file] of files) {
    const readyz: number[] = [];
    const connect: number[] = [];
    let peak = rssBytes(child.pid!);
    let done = false;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(child.pid!))), 50);
    const started = performance.now();
    const upload = fetch(`${svc.base}/api/v1/sites/${site.id}/import`, { method: 'POST', headers: { authorization: `Bearer ${svc.adminToken}`, 'content-type': XLSX_TYPE }, body: file }).then(async (r) => {
      const ms = performance.now() - started;
      done = true;
      return { status: r.status, body: (await r.json()) as any, ms };
    });
    const probes = (async () => {
      while (!done) {
        let t0 = performance.now();
        await fetch(`${svc.base}/readyz`).then((r) => r.arrayBuffer());
        readyz.push(performance.now() - t0);
        t0 = performance.now();
        const raw = await RawMqtt.connect(svc.mqttPort);
        raw.send(raw.connectPacket(MAC, MAC, deriveDeviceKey(svc.secret, MAC)));
        await raw.next('connack', 120_000);
        connect.push(performance.now() - t0);
        raw.end();
        await sleep(20);
      }
    })();
    const res = await upload;
    await probes;
    clearInterval(sampler);
    await sleep(500);
    const max = (a: number[]) => Math.round(Math.max(...a));
    const median = (a: number[]) => Math.round([...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN);
    log(
      `${name}: ${(file.length / 1024).toFixed(0)} KB → ${res.status} ${res.body?.error?.code ?? 'ok'} in ${Math.round(res.ms)} ms;`,
      `/readyz ×${readyz.length} median ${median(readyz)} max ${max(readyz)} ms; CONNECT ×${connect.length} median ${median(connect)} max ${max(connect)} ms;`,
      `RSS peak ${(peak / 1048576).toFixed(0)} MB, after ${(rssBytes(child.pid!) / 1048576).toFixed(0)} MB`,
    );
  }
  // An idle reading worker is kept 30 s for the next file, then its thread and heap are given back.
  await sleep(35_000);
  log(`RSS 35 s after the last upload: ${(rssBytes(child.pid!) / 1048576).toFixed(0)} MB`);
});
