import type { ChildProcess } from 'node:child_process';
import { parseArgs } from 'node:util';
import { deriveDeviceKey } from '../src/devices/device-key.js';
import { sampleIxgSite, uploadIxgSite } from '../simulators/ixg-gateway.js';
import { fleetMacs } from '../simulators/fleet.js';
import { startFleet } from './lib/fleet.js';
import { rssBytes, waitUntil } from './lib/proc.js';
import { benchService, build } from './lib/service.js';

// npm run bench:directory -- [--apartments 2000] [--residents 5000] [--door-phones 20] [--revocations 20]
const { values: args } = parseArgs({
  options: {
    apartments: { type: 'string', default: '2000' },
    residents: { type: 'string', default: '5000' },
    'door-phones': { type: 'string', default: '20' },
    revocations: { type: 'string', default: '20' },
    workers: { type: 'string', default: '4' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const APARTMENTS = Number(args.apartments);
const RESIDENTS = Number(args.residents);
const GATES = Number(args['door-phones']);
const REVOCATIONS = Number(args.revocations);
const BUILDINGS = Math.max(1, Math.ceil(APARTMENTS / 200));
const gates = fleetMacs('C0A0', GATES);
const monitors = fleetMacs('C0A1', APARTMENTS);
const children: ChildProcess[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const mb = (b: number) => b / 1024 / 1024;

/** Waits for a condition the measurement needs; a run that never gets there is no measurement. */
async function until(probe: () => Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<void> {
  if (!(await waitUntil(probe, timeoutMs, stepMs))) throw new Error('timed out');
}

async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

const svc = await benchService(args['pg-admin-url']);
try {
  log('building the service');
  build();
  const service = await svc.start();
  children.push(service);
  const { installer } = await svc.api('POST', '/api/v1/installers', { name: 'Bench installer', email: `bench-${Date.now()}@example.com` });
  log(`registering ${GATES} door phones and ${APARTMENTS} indoor monitors' MACs`);
  await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.id}`, ['MAC', ...gates, ...monitors].join('\n'), 'text/csv');
  await pool(gates, 16, (mac) => svc.api('POST', '/api/v1/devices', { mac, name: `Gate ${mac.slice(-3)}`, type: 0 }));
  // The monitors are only in the MAC library: the template's Device column makes them (issue 21).
  const site = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'Bench site', timeZone: 'Europe/Berlin', installerId: installer.id });
  await pool(gates, 8, (mac) => svc.api('PATCH', `/api/v1/devices/${mac}`, { siteId: site.id }));

  // The template: apartment i in building i mod BUILDINGS, its monitor, and residents spread evenly.
  const rows = ['Building,Apt,AptName,Device,FirstName,LastName,MobileNumber,TelephoneCallingCode'];
  for (let r = 0; r < RESIDENTS; r++) {
    const a = r % APARTMENTS;
    const first = r < APARTMENTS;
    rows.push(`Tower ${a % BUILDINGS},${1000 + a},Apt ${a},${first ? `"Monitor,2,${monitors[a]}"` : ''},First${r},Last${r},17${String(r).padStart(8, '0')},+49`);
  }
  const rssBefore = rssBytes(service.pid!);
  let rssPeak = rssBefore;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, rssBytes(service.pid!))), 100);
  log(`importing ${APARTMENTS} apartments and ${RESIDENTS} residents (${rows.length - 1} rows)`);
  const t0 = performance.now();
  const imported = await svc.api('POST', `/api/v1/sites/${site.id}/import`, rows.join('\n'), 'text/csv');
  const importSeconds = (performance.now() - t0) / 1000;
  log(`imported in ${fmt(importSeconds, 2)} s: ${JSON.stringify(imported.created)}`);

  const residents = await svc.sql<{ id: string }>('SELECT id FROM residents WHERE site_id = $1 ORDER BY created_at, id', [site.id]);
  log(`adding ${residents.length * 2} PIN codes and cards`);
  const t1 = performance.now();
  const pins: string[] = [];
  await pool(residents.map((r, i) => ({ r, i })), 32, async ({ r, i }) => {
    const pin = await svc.api('POST', `/api/v1/residents/${r.id}/credentials`, { kind: 'pin', value: String(10_000_000 + i) });
    pins.push(pin.id);
    await svc.api('POST', `/api/v1/residents/${r.id}/credentials`, { kind: 'card', value: (0xa0000000 + i).toString(16) });
  });
  const credentialSeconds = (performance.now() - t1) / 1000;
  await until(async () => (await svc.sql('SELECT count(*)::int AS n FROM directory_changes'))[0].n === 0, 300_000, 100);
  log(`credentials added in ${fmt(credentialSeconds, 1)} s; directory rendered`);

  log(`connecting ${GATES + APARTMENTS} simulated devices`);
  const t2 = performance.now();
  const fleet = await startFleet({ url: `mqtt://127.0.0.1:${svc.mqttPort}`, secret: svc.secret, hello: true, macs: [...gates, ...monitors], workers: Number(args.workers), children });
  const unfinished = async () => (await svc.sql("SELECT count(*)::int AS n FROM jobs WHERE state NOT IN ('succeeded','failed','expired','canceled')"))[0].n as number;
  // Progress every 10 s, so a run that does not get there says where it stands.
  const progress = setInterval(() => {
    void svc
      .sql("SELECT kind, state, count(*)::int AS n FROM jobs WHERE state NOT IN ('succeeded','failed','expired','canceled') GROUP BY kind, state ORDER BY kind, state")
      .then((rows) => log(`  ${fleet.subscribed()} subscribed; unfinished jobs ${JSON.stringify(rows)}`), () => {});
  }, 10_000);
  await until(async () => fleet.subscribed() >= GATES + APARTMENTS && (await unfinished()) === 0, 600_000, 200).finally(() => clearInterval(progress));
  const bootSeconds = (performance.now() - t2) / 1000;
  const states = await svc.sql("SELECT state, count(*)::int AS n FROM jobs GROUP BY state ORDER BY state");
  log(`all provisioned in ${fmt(bootSeconds, 1)} s: ${JSON.stringify(states)}`);
  const failures = await svc.sql("SELECT kind, error->>'code' AS code, left(error->>'message', 120) AS message, count(*)::int AS n FROM jobs WHERE state = 'failed' GROUP BY 1, 2, 3 ORDER BY n DESC LIMIT 10");
  if (failures.length) log(`failed jobs by reason: ${JSON.stringify(failures)}`);

  // Sizes: what a door phone's command carries (its configuration) and the documents it fetches.
  const auth = `Basic ${Buffer.from(`${gates[0]}:${deriveDeviceKey(svc.secret, gates[0]!)}`).toString('base64')}`;
  const configBytes = Buffer.byteLength(await (await fetch(`${svc.base}/autop/${gates[0]}.cfg`, { headers: { authorization: auth } })).text());
  const gateView = await svc.api('GET', `/api/v1/devices/${gates[0]}/directory`);
  const monitorView = await svc.api('GET', `/api/v1/devices/${monitors[0]}/directory`);
  const size = (view: any, name: string) => view.documents.find((d: any) => d.name === name)?.size ?? 0;
  const gzipBytes = async (sha: string) => {
    // fetch() inflates the body; the bytes on the wire are the header's count.
    const res = await fetch(`${svc.base}/documents/${sha}`, { headers: { authorization: auth, 'accept-encoding': 'gzip' } });
    await res.arrayBuffer();
    if (res.headers.get('content-encoding') !== 'gzip') throw new Error('the document was not sent gzip-compressed');
    return Number(res.headers.get('content-length'));
  };
  const contactsGzip = await gzipBytes(gateView.documents.find((d: any) => d.name === 'contacts').sha256);
  const credentialsGzip = await gzipBytes(gateView.documents.find((d: any) => d.name === 'credentials').sha256);

  // Revocation: from the DELETE until every public door phone has applied a list without the PIN.
  const gateList = `{${gates.join(',')}}`;
  const latencies: number[] = [];
  for (let k = 0; k < REVOCATIONS; k++) {
    const at = (await svc.sql<{ at: Date }>('SELECT clock_timestamp() AS at'))[0]!.at;
    await svc.api('DELETE', `/api/v1/credentials/${pins[k]}`);
    let done: { n: number; last: Date | null } = { n: 0, last: null };
    await until(async () => {
      done = (await svc.sql<{ n: number; last: Date | null }>(
        "SELECT count(DISTINCT mac)::int AS n, max(finished_at) AS last FROM jobs WHERE mac = ANY($1::text[]) AND created_at >= $2 AND state = 'succeeded' AND kind = 'provision'",
        [gateList, at],
      ))[0]!;
      return done.n === GATES;
    }, 60_000).catch(async (err: unknown) => {
      log(`revocation ${k}: ${done.n} of ${GATES} door phones applied; their jobs since: ${JSON.stringify(await svc.sql("SELECT state, error->>'code' AS code, count(*)::int AS n FROM jobs WHERE mac = ANY($1::text[]) AND created_at >= $2 GROUP BY 1, 2", [gateList, at]))}`);
      throw err;
    });
    latencies.push(done.last!.getTime() - at.getTime());
  }
  latencies.sort((a, b) => a - b);
  clearInterval(sampler);
  await fleet.stop();

  // IXG (issue 21): its gateway uploads 5 buildings of 100 units (an entrance unit and 99 residential, a
  // master and a sub station each): until mirrored, and until the site's change is rendered.
  const [ixgMac] = fleetMacs('C0A2', 1);
  await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.id}`, `MAC\n${ixgMac}`, 'text/csv');
  await svc.api('POST', '/api/v1/devices', { mac: ixgMac, name: 'IXG gateway', type: 'ixgw' });
  const ixgSite = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'IXG bench site', timeZone: 'Europe/Berlin', installerId: installer.id });
  await svc.api('PATCH', `/api/v1/devices/${ixgMac}`, { siteId: ixgSite.id });
  const ixgDoc = sampleIxgSite({ gatewayMac: ixgMac!, buildings: 5, units: 99, stationsPerUnit: 2 });
  const ixgUnits = ixgDoc.buildings.reduce((n, b) => n + b.units.length, 0);
  const ixgStations = ixgDoc.buildings.reduce((n, b) => n + b.units.reduce((m, u) => m + u.stations.length, 0), 0);
  const t3 = performance.now();
  const uploaded = await uploadIxgSite(svc.base, ixgMac!, deriveDeviceKey(svc.secret, ixgMac!), ixgDoc);
  const ixgUploadSeconds = (performance.now() - t3) / 1000;
  await until(async () => (await svc.sql('SELECT count(*)::int AS n FROM directory_changes'))[0].n === 0, 60_000, 20);
  const ixgRenderedSeconds = (performance.now() - t3) / 1000;
  ixgDoc.buildings[0]!.units[1]!.name = 'Renamed';
  const t4 = performance.now();
  const reuploaded = await uploadIxgSite(svc.base, ixgMac!, deriveDeviceKey(svc.secret, ixgMac!), ixgDoc);
  const ixgReuploadSeconds = (performance.now() - t4) / 1000;
  log(`IXG upload of ${ixgUnits} units and ${ixgStations} stations: ${uploaded.status} in ${fmt(ixgUploadSeconds, 2)} s, rendered after ${fmt(ixgRenderedSeconds, 2)} s; one unit renamed: ${reuploaded.status} ${JSON.stringify(reuploaded.body?.counts?.units)} in ${fmt(ixgReuploadSeconds, 2)} s`);

  // Every residential unit's app connects by its QR code; then every entrance station is renamed: until
  // mirrored, and until every app's address book (GET /api/v1/app/address-book) names the new station.
  const residential: { id: string }[] = await svc.sql("SELECT id FROM apartments WHERE site_id = $1 AND unit_type = 'residential'", [ixgSite.id]);
  await svc.api('PUT', `/api/v1/sites/${ixgSite.id}/app-licences`, { units: residential.length });
  const ixgApps: { user: string; password: string }[] = [];
  await pool(residential, 32, async (a) => {
    const code = await svc.api('POST', `/api/v1/apartments/${a.id}/app-registrations`);
    const res = await fetch(code.registrationUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const body = (await res.json()) as { sip: { username: string; password: string } };
    ixgApps.push({ user: body.sip.username, password: body.sip.password });
  });
  for (const b of ixgDoc.buildings) b.units[0]!.stations[0]!.name = `${b.units[0]!.stations[0]!.name} (new)`;
  const t5 = performance.now();
  const renamed = await uploadIxgSite(svc.base, ixgMac!, deriveDeviceKey(svc.secret, ixgMac!), ixgDoc);
  const ixgRenameSeconds = (performance.now() - t5) / 1000;
  let stale = 0;
  await pool(ixgApps, 32, async (app) => {
    const res = await fetch(`${svc.base}/api/v1/app/address-book`, { headers: { authorization: `Basic ${Buffer.from(`${app.user}:${app.password}`).toString('base64')}` } });
    const book = (await res.json()) as { addressBook: { name: string }[] };
    if (res.status !== 200 || !book.addressBook[0]?.name.endsWith('(new)')) stale++;
  });
  const ixgBooksSeconds = (performance.now() - t5) / 1000;
  if (stale) throw new Error(`${stale} app address books do not show the renamed station`);
  log(`IXG: ${ixgApps.length} apps connected; entrance stations renamed: ${renamed.status} in ${fmt(ixgRenameSeconds, 2)} s, every app's address book read back renamed after ${fmt(ixgBooksSeconds, 2)} s`);

  console.log(`
| measure | result |
| --- | --- |
| template import: ${APARTMENTS} apartments, ${RESIDENTS} residents, ${imported.created.devices} monitors made from the Device column and placed, ${BUILDINGS} buildings | ${fmt(importSeconds, 2)} s |
| ${residents.length * 2} PIN codes and cards added one request each (32 in flight), until rendered | ${fmt(credentialSeconds, 1)} s (${fmt((residents.length * 2) / credentialSeconds, 0)}/s) |
| ${GATES + APARTMENTS} devices connect and are provisioned with their documents | ${fmt(bootSeconds, 1)} s (${JSON.stringify(states)}) |
| PIN revoked → every one of ${GATES} public door phones applied the new list (${REVOCATIONS} revocations) | p50 ${fmt(pct(latencies, 50), 0)} ms, p99 ${fmt(pct(latencies, 99), 0)} ms |
| door phone's configuration (what a command carries) | ${fmt(configBytes, 0)} B |
| door phone's contact list document | ${fmt(size(gateView, 'contacts'), 0)} B (gzip ${fmt(contactsGzip, 0)} B) |
| door phone's credential list document | ${fmt(size(gateView, 'credentials'), 0)} B (gzip ${fmt(credentialsGzip, 0)} B) |
| indoor monitor's contact list document | ${fmt(size(monitorView, 'contacts'), 0)} B |
| IXG upload: ${ixgUnits} units, ${ixgStations} stations, ${ixgUnits - 5} apps with address books; until mirrored / until the site's change rendered | ${fmt(ixgUploadSeconds, 2)} s / ${fmt(ixgRenderedSeconds, 2)} s |
| IXG re-upload with one unit renamed, until mirrored | ${fmt(ixgReuploadSeconds, 2)} s |
| IXG re-upload renaming the entrance stations, ${ixgApps.length} apps connected: until mirrored / until every app's address book (read by each app, 32 at a time) names the new station | ${fmt(ixgRenameSeconds, 2)} s / ${fmt(ixgBooksSeconds, 2)} s |
| service RSS before the import → peak until the end | ${fmt(mb(rssBefore))} → ${fmt(mb(rssPeak))} MB (growth ${fmt(mb(rssPeak - rssBefore))} MB) |`);
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await svc.cleanup();
}
