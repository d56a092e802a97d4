import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { findKamailio, freeSipPort } from '../src/calls/kamailio.js';
import { fleetMacs } from '../simulators/fleet.js';
import { cpuSeconds, freePort, rssBytes, runBench, sleep, waitUntil } from './lib/proc.js';
import { benchService, build, root, type BenchService } from './lib/service.js';
import { authField, findSipp, startSipp, writeInjection, type SippResult } from './lib/sipp.js';

// npm run bench:sip -- [--accounts 20000] [--rates 200,500,1000] [--call-rate 50] [--call-seconds 60]
//
// The service with its own Kamailio (SIP_SERVER unset) on 127.0.0.1, N device accounts made through the
// API, a site whose door phones ring the apartments' indoor monitors; SIPp over UDP as the stations:
//   1. every account registers (expires 300) at --register-rate; how many hold (sip_registrations, API)
//   2. re-registration at each of --rates for --sweep-seconds: REGISTER/s with < 1 % failures
//   3. door phones call apartments at --call-rate for --call-seconds; the monitors are a SIPp UAS:
//      setup time = authenticated INVITE → 180 Ringing at the door phone (SIPp rtd, every call)
const { values: args } = parseArgs({
  options: {
    accounts: { type: 'string', default: '20000' },
    buildings: { type: 'string', default: '10' },
    'apartments-per-building': { type: 'string', default: '100' },
    'door-phones-per-building': { type: 'string', default: '2' },
    'register-rate': { type: 'string', default: '200' },
    rates: { type: 'string', default: '200,500,1000' },
    'sweep-seconds': { type: 'string', default: '20' },
    'call-rate': { type: 'string', default: '50' },
    'call-seconds': { type: 'string', default: '60' },
    'sipp-processes': { type: 'string', default: '1' },
    'sip-workers': { type: 'string', default: '4' },
    'create-concurrency': { type: 'string', default: '32' },
    'pg-admin-url': { type: 'string', default: process.env.BENCH_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  },
});
const N = Number(args.accounts);
const BUILDINGS = Number(args.buildings);
const PER_BUILDING = Number(args['apartments-per-building']);
const DOORS_PER_BUILDING = Number(args['door-phones-per-building']);
const APARTMENTS = BUILDINGS * PER_BUILDING;
const DOORS = BUILDINGS * DOORS_PER_BUILDING;
const REGISTER_RATE = Number(args['register-rate']);
const RATES = args.rates.split(',').map(Number).filter((r) => r > 0);
const SWEEP_SECONDS = Number(args['sweep-seconds']);
const CALL_RATE = Number(args['call-rate']);
const CALL_SECONDS = Number(args['call-seconds']);
const CALLS = CALL_RATE * CALL_SECONDS;
const PROCS = Math.max(1, Math.min(8, Number(args['sipp-processes'])));
const CONCURRENCY = Number(args['create-concurrency']);
if (N < DOORS + APARTMENTS) throw new Error(`--accounts must be at least the door phones and monitors of the site (${DOORS + APARTMENTS})`);

const children: ChildProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 23)}]`, ...a);
const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }) : 'n/a');
const mb = (b: number) => b / 1024 / 1024;
const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;

async function pool<T>(items: T[], concurrency: number, work: (item: T, i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

/** Every process below `pid` (Kamailio's main process and its workers under the service). */
function descendants(pid: number): { pid: number; comm: string }[] {
  const parent = new Map<number, { ppid: number; comm: string }>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), { ppid, comm });
    } catch {
      /* gone */
    }
  }
  const out: { pid: number; comm: string }[] = [];
  const walk = (p: number) => {
    for (const [c, v] of parent) if (v.ppid === p) (out.push({ pid: c, comm: v.comm }), walk(c));
  };
  walk(pid);
  return out;
}

/** Proportional set size (shared pages divided among the processes sharing them), in bytes. */
function pssBytes(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

interface Memory {
  serviceRss: number;
  kamailioPss: number;
  kamailioRssMax: number;
  kamailioProcesses: number;
}
function memory(servicePid: number): Memory {
  const kam = descendants(servicePid).filter((p) => p.comm === 'kamailio');
  return {
    serviceRss: rssBytes(servicePid),
    kamailioPss: kam.reduce((s, p) => s + (pssBytes(p.pid) || 0), 0),
    kamailioRssMax: Math.max(0, ...kam.map((p) => rssBytes(p.pid) || 0)),
    kamailioProcesses: kam.length,
  };
}
function cpu(servicePid: number): { service: number; kamailio: number } {
  return { service: cpuSeconds(servicePid), kamailio: descendants(servicePid).filter((p) => p.comm === 'kamailio').reduce((s, p) => s + (cpuSeconds(p.pid) || 0), 0) };
}

const stat = (r: SippResult, name: string) => Number(r.stats?.[name] ?? NaN);
/** SIPp's non-zero cumulative failure counters, e.g. "FailedMaxUDPRetrans 3, FailedUnexpectedMessage 2". */
const failures = (r: SippResult) =>
  Object.entries(r.stats ?? {})
    .filter(([k, v]) => /^Failed.+\(C\)$/.test(k) && k !== 'FailedCall(C)' && Number(v) > 0)
    .map(([k, v]) => `${k.replace('(C)', '')} ${v}`)
    .join(', ') || 'none';

interface Account {
  mac: string;
  number: string;
  password: string;
}

await runBench(children, cleanups, async () => {
  const kamailio = findKamailio();
  const sipp = findSipp();
  if (!kamailio) throw new Error('kamailio is not installed');
  if (!sipp) throw new Error('sipp is not installed (Debian: sip-tester)');
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'bench-sip-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const load0 = loadavg();
  log(`bench:sip on ${commit}: ${N} accounts, ${BUILDINGS} buildings × ${PER_BUILDING} apartments, ${DOORS} door phones; ${cpus().length} cores, load ${load0.map((l) => fmt(l, 2)).join(' ')}`);

  const svc: BenchService = await benchService(args['pg-admin-url']);
  cleanups.push(() => svc.cleanup());
  log('building the service');
  build();
  const host = '127.0.0.1';
  const backendToken = `bench_${randomBytes(18).toString('hex')}`;
  const ports = { udp: await freeSipPort(host), tcp: 0, tls: await freeSipPort(host), ws: await freeSipPort(host), wss: await freeSipPort(host) };
  ports.tcp = ports.udp;
  // Kamailio's back end listens apart from the public HTTP port: known, so that the bench can time it.
  const backendPort = await freePort();
  const domain = host;
  const service = await svc.start({
    SIP_SERVER: '',
    SIP_HOST: host,
    SIP_DOMAIN: domain,
    SIP_UDP_PORT: String(ports.udp),
    SIP_TCP_PORT: String(ports.tcp),
    SIP_TLS_PORT: String(ports.tls),
    SIP_WS_PORT: String(ports.ws),
    SIP_WSS_PORT: String(ports.wss),
    SIP_WORKERS: args['sip-workers'],
    // Known, so that the bench can time the back end Kamailio calls on every REGISTER and INVITE.
    SIP_BACKEND_TOKEN: backendToken,
    SIP_BACKEND_PORT: String(backendPort),
  });
  children.push(service);
  // /readyz answers before Kamailio is up (it starts once HTTP listens, with sip "off" until then).
  let ready: any = null;
  if (!(await waitUntil(async () => (ready = await svc.api('GET', '/readyz').catch(() => null))?.checks?.sip === 'ok', 30_000, 100))) throw new Error(`the service's SIP server is not ready: ${JSON.stringify(ready)}`);
  const target = `${host}:${ports.udp}`;
  const mem0 = memory(service.pid!);
  log(`service ready, Kamailio on udp ${target} (${mem0.kamailioProcesses} processes, ${args['sip-workers']} UDP workers)`);

  // 1. Accounts: the MACs in one CSV import, then one POST /api/v1/devices each (the password is only in that answer).
  const { installer } = await svc.api('POST', '/api/v1/installers', { name: 'SIP bench installer', email: `sip-bench-${Date.now()}@example.com` });
  const macs = fleetMacs('5A1B', N);
  const t0 = performance.now();
  for (let i = 0; i < macs.length; i += 50_000) await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.id}`, ['MAC', ...macs.slice(i, i + 50_000)].join('\n'), 'text/csv');
  const accounts: Account[] = new Array(N);
  // Door phones first (type 0), then one indoor monitor per apartment and the other stations (type 2).
  await pool(macs, CONCURRENCY, async (mac, i) => {
    const d = await svc.api('POST', '/api/v1/devices', { mac, name: `${i < DOORS ? 'Door' : 'Monitor'} ${mac.slice(-5)}`, type: i < DOORS ? 0 : 2 });
    accounts[i] = { mac, number: d.sip.number, password: d.sip.password };
  });
  const createSeconds = (performance.now() - t0) / 1000;
  log(`${N} device accounts created in ${fmt(createSeconds, 1)} s (${fmt(N / createSeconds, 0)}/s)`);
  const doors = accounts.slice(0, DOORS);
  const monitors = accounts.slice(DOORS, DOORS + APARTMENTS);

  // The site: apartments 101… in every building, each with its monitor (a site template import); door phones in the buildings.
  const site = await svc.api('POST', '/api/v1/sites', { kind: 'community', name: 'SIP bench site', timeZone: 'Europe/Berlin', installerId: installer.id });
  const aptNumber = (a: number) => String(101 + (a % PER_BUILDING));
  const rows = ['Building,Apt,Device'];
  for (let a = 0; a < APARTMENTS; a++) rows.push(`B${Math.floor(a / PER_BUILDING)},${aptNumber(a)},"Monitor,2,${monitors[a]!.mac}"`);
  const imported = await svc.api('POST', `/api/v1/sites/${site.id}/import`, rows.join('\n'), 'text/csv');
  const buildings = await svc.sql<{ id: string; name: string }>('SELECT id, name FROM buildings WHERE site_id = $1', [site.id]);
  const buildingId = new Map(buildings.map((b) => [b.name, b.id]));
  await pool(doors, 8, (d, i) => svc.api('PATCH', `/api/v1/devices/${d.mac}`, { siteId: site.id, buildingId: buildingId.get(`B${Math.floor(i / DOORS_PER_BUILDING)}`) }));
  log(`site: ${JSON.stringify(imported.created)}; ${DOORS} door phones placed`);

  // 2. Every account registers once (expires 300), from PROCS SIPp processes on 127.0.0.2, 127.0.0.3, …
  const commands: string[] = [];
  let runNo = 0;
  // `at`: register from that address (one process), so the registrations reach it: the server sends a
  // call to the REGISTER's source, whatever its Contact names (932ac30).
  async function registerAll(list: Account[], rate: number, label: string, at?: { ip: string; port: number }, rtt = false) {
    const procs = at ? 1 : PROCS;
    const share = Math.ceil(list.length / procs);
    const runs = await Promise.all(
      Array.from({ length: procs }, async (_, p) => {
        const part = list.slice(p * share, (p + 1) * share);
        if (!part.length) return null;
        const ip = at?.ip ?? `127.0.0.${2 + p}`;
        const port = at?.port ?? (await freePort());
        const name = `${label}-${++runNo}`;
        const inf = writeInjection(join(dir, `${name}.csv`), part.map((a) => [a.number, authField(a.number, a.password), `${ip}:${port}`, domain]));
        const r = startSipp({
          scenario: 'register.xml',
          target,
          localIp: ip,
          localPort: port,
          dir,
          name,
          injection: inf,
          calls: part.length,
          rate: rate / procs,
          limit: Math.max(100, Math.ceil((rate / procs) * 5)),
          timeoutSeconds: Math.ceil(part.length / (rate / procs)) + 60,
          recvTimeoutMs: 10_000,
          stats: true,
          rtt,
          byeOnAbort: false,
        });
        children.push(r.child);
        return r.done;
      }),
    );
    const done = runs.filter((r): r is SippResult => r !== null);
    for (const r of done) commands.push(r.command);
    const ok = done.reduce((s, r) => s + (stat(r, 'SuccessfulCall(C)') || 0), 0);
    const failed = done.reduce((s, r) => s + (stat(r, 'FailedCall(C)') || 0), 0);
    const seconds = Math.max(...done.map((r) => r.seconds));
    const rtts = done.flatMap((r) => r.rtt.filter((x) => x.rtd === 'register').map((x) => x.ms)).sort((a, b) => a - b);
    const errors = done.map((r) => r.errors).filter(Boolean);
    const why = done.map(failures).join('; ');
    return { why, attempted: list.length, ok, failed, unfinished: list.length - ok - failed, seconds, rate: ok / seconds, rtts, errors, codes: done.map((r) => r.code) };
  }
  const registeredNow = async () => Number((await svc.sql<{ n: string }>('SELECT count(*) AS n FROM sip_registrations WHERE expires_at > now()'))[0]!.n);

  const initial = await registerAll(accounts, REGISTER_RATE, 'register-all', undefined, true);
  await waitUntil(async () => (await registeredNow()) >= initial.ok, 30_000, 250);
  const held = await registeredNow();
  const mem1 = memory(service.pid!);
  // The API's view of a sample of them.
  const sample = accounts.filter((_, i) => i % Math.max(1, Math.floor(N / 50)) === 0);
  const sampleRegistered = (await Promise.all(sample.map((a) => svc.api('GET', `/api/v1/devices/${a.mac}`)))).filter((d) => d.sipStatus === 'registered').length;
  log(
    `registered ${initial.ok}/${N} at ${REGISTER_RATE}/s in ${fmt(initial.seconds, 1)} s (${fmt(initial.rate, 0)}/s), failed ${initial.failed}, unfinished ${initial.unfinished}; held (sip_registrations, expires in the future) ${held}; API sample ${sampleRegistered}/${sample.length} registered; ` +
      `REGISTER→200 p50 ${fmt(pct(initial.rtts, 50), 1)} ms p99 ${fmt(pct(initial.rtts, 99), 1)} ms`,
  );
  if (initial.errors.length) log(`SIPp errors (start): ${initial.errors[0]!.slice(0, 600)}`);

  // 3. Re-registration at each rate: the same accounts refresh (expires 300) for SWEEP_SECONDS.
  const sweep: { rate: number; attempted: number; ok: number; failed: number; unfinished: number; achieved: number; failureRate: number; p50: number; p99: number; cpuService: number; cpuKamailio: number }[] = [];
  let offset = 0;
  for (const rate of RATES) {
    const count = Math.min(N, rate * SWEEP_SECONDS);
    const list = Array.from({ length: count }, (_, i) => accounts[(offset + i) % N]!);
    offset = (offset + count) % N;
    const c0 = cpu(service.pid!);
    const r = await registerAll(list, rate, `sweep-${rate}`, undefined, true);
    const c1 = cpu(service.pid!);
    const failureRate = (count - r.ok) / count;
    sweep.push({ rate, attempted: count, ok: r.ok, failed: r.failed, unfinished: r.unfinished, achieved: r.rate, failureRate, p50: pct(r.rtts, 50), p99: pct(r.rtts, 99), cpuService: c1.service - c0.service, cpuKamailio: c1.kamailio - c0.kamailio });
    log(`re-register at ${rate}/s: ${r.ok}/${count} in ${fmt(r.seconds, 1)} s (${fmt(r.rate, 0)}/s achieved), failed ${r.failed}, unfinished ${r.unfinished} (${fmt(failureRate * 100, 2)} %); REGISTER→200 p50 ${fmt(pct(r.rtts, 50))} ms p99 ${fmt(pct(r.rtts, 99))} ms; CPU service ${fmt(c1.service - c0.service, 1)} s, Kamailio ${fmt(c1.kamailio - c0.kamailio, 1)} s`);
    if (r.failed) log(`SIPp failure counters: ${r.why}`);
    if (r.errors.length) log(`SIPp errors (start): ${r.errors[0]!.slice(0, 400)}`);
    await sleep(2000);
  }
  const best = sweep.filter((s) => s.failureRate < 0.01).sort((a, b) => b.achieved - a.achieved)[0] ?? null;
  const heldAfter = await registeredNow();
  const mem2 = memory(service.pid!);

  // 4. Calls: the monitors re-register from a SIPp UAS's address; door phones call their buildings' apartments.
  const uasIp = '127.0.0.1';
  const uasPort = await freePort();
  const monitorsToUas = await registerAll(monitors, Math.min(REGISTER_RATE, 500), 'monitors-to-uas', { ip: uasIp, port: uasPort });
  if (monitorsToUas.ok !== monitors.length) log(`WARNING: only ${monitorsToUas.ok}/${monitors.length} monitors registered to the UAS`);
  const uas = startSipp({ scenario: 'monitor-uas.xml', localIp: uasIp, localPort: uasPort, dir, name: 'uas', calls: CALLS, timeoutSeconds: CALL_SECONDS + 120, recvTimeoutMs: 30_000, stats: true });
  children.push(uas.child);
  commands.push(uas.command);
  await sleep(500);
  const callRows: string[][] = [];
  for (let i = 0; i < CALLS; i++) {
    const d = i % DOORS;
    const building = Math.floor(d / DOORS_PER_BUILDING);
    // Every apartment of the door phone's building in turn.
    const apartment = building * PER_BUILDING + (Math.floor(i / DOORS) % PER_BUILDING);
    callRows.push([doors[d]!.number, authField(doors[d]!.number, doors[d]!.password), aptNumber(apartment), domain]);
  }
  const callInf = writeInjection(join(dir, 'calls.csv'), callRows);
  const callsBefore = Number((await svc.sql<{ n: string }>('SELECT count(*) AS n FROM calls'))[0]!.n);
  const c0 = cpu(service.pid!);
  const load1 = loadavg();
  const uac = startSipp({ scenario: 'door-call.xml', target, localIp: '127.0.0.5', localPort: await freePort(), dir, name: 'door-calls', injection: callInf, calls: CALLS, rate: CALL_RATE, limit: CALL_RATE * 10, timeoutSeconds: CALL_SECONDS + 90, recvTimeoutMs: 15_000, stats: true, rtt: true });
  children.push(uac.child);
  const calls = await uac.done;
  const c1 = cpu(service.pid!);
  commands.push(calls.command);
  const uasDone = await Promise.race([uas.done, sleep(15_000).then(() => null)]);
  if (!uasDone && uas.child.exitCode === null) uas.child.kill('SIGTERM');
  const uasResult = uasDone ?? (await uas.done);
  await sleep(2000);
  const outcomes = await svc.sql<{ outcome: string; n: string }>('SELECT outcome, count(*) AS n FROM calls GROUP BY outcome ORDER BY outcome');
  const callsRecorded = outcomes.reduce((s, o) => s + Number(o.n), 0) - callsBefore;
  const setup = calls.rtt.filter((r) => r.rtd === 'setup').map((r) => r.ms).sort((a, b) => a - b);
  const challenge = calls.rtt.filter((r) => r.rtd === 'challenge').map((r) => r.ms).sort((a, b) => a - b);
  const callOk = stat(calls, 'SuccessfulCall(C)');
  const callFailed = stat(calls, 'FailedCall(C)');
  const callSeconds = calls.seconds;
  const mem3 = memory(service.pid!);
  log(
    `calls at ${CALL_RATE}/s: ${callOk}/${CALLS} completed, ${callFailed} failed, in ${fmt(callSeconds, 1)} s; setup (INVITE with digest → 180) p50 ${fmt(pct(setup, 50), 2)} ms p95 ${fmt(pct(setup, 95), 2)} ms p99 ${fmt(pct(setup, 99), 2)} ms max ${fmt(setup.at(-1) ?? NaN, 2)} ms (${setup.length}); ` +
      `407 challenge p50 ${fmt(pct(challenge, 50), 2)} ms p99 ${fmt(pct(challenge, 99), 2)} ms; recorded ${callsRecorded} (${outcomes.map((o) => `${o.outcome} ${o.n}`).join(', ')}); UAS answered ${stat(uasResult, 'SuccessfulCall(C)')}; CPU service ${fmt(c1.service - c0.service, 1)} s, Kamailio ${fmt(c1.kamailio - c0.kamailio, 1)} s over the calls`,
  );
  log(`SIPp failure counters: door phones ${failures(calls)}; monitors (UAS) ${failures(uasResult)}`);
  if (calls.errors) log(`SIPp door phones' errors (start): ${calls.errors.slice(0, 800)}`);

  // The back end Kamailio waits for (synchronously, in its worker) on every call: /credentials and /route, one at a time, idle.
  const backend = async (path: string, init: RequestInit) => {
    const t = performance.now();
    const res = await fetch(`http://${host}:${backendPort}/internal/sip${path}`, { ...init, headers: { authorization: `Bearer ${backendToken}`, ...(init.body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) } });
    await res.text();
    if (res.status !== 200) throw new Error(`back end ${path}: ${res.status}`);
    return performance.now() - t;
  };
  const credMs: number[] = [];
  const routeMs: number[] = [];
  for (let i = 0; i < 200; i++) {
    const d = doors[i % DOORS]!;
    credMs.push(await backend(`/credentials?username=${d.number}`, { method: 'GET' }));
    routeMs.push(await backend('/route', { method: 'POST', body: new URLSearchParams({ caller: d.number, callee: callRows[i]![2]!, callId: `bench-route-${i}` }).toString() }));
  }
  credMs.sort((a, b) => a - b);
  routeMs.sort((a, b) => a - b);
  log(`back end, sequential, idle: /credentials p50 ${fmt(pct(credMs, 50), 2)} ms p99 ${fmt(pct(credMs, 99), 2)} ms; /route (site of ${APARTMENTS} apartments, ${APARTMENTS + DOORS} stations) p50 ${fmt(pct(routeMs, 50), 2)} ms p99 ${fmt(pct(routeMs, 99), 2)} ms`);
  const warnings = [...svc.logs()].map(([k, n]) => `${k} ×${n}`);
  if (warnings.length) log(`service warnings/errors: ${warnings.slice(0, 10).join(' | ')}`);

  console.log(`\n## bench:sip — ${N} accounts, Kamailio (${args['sip-workers']} UDP workers) as the service's child, SIPp over UDP on loopback (commit ${commit})\n`);
  console.log('| measure | result |');
  console.log('| --- | --- |');
  console.log(`| accounts created through the API (MAC CSV import + POST /devices, ${CONCURRENCY} at once) | ${N} in ${fmt(createSeconds, 1)} s |`);
  console.log(`| registered: 200 to REGISTER at ${REGISTER_RATE}/s | ${initial.ok} / ${N} (failed ${initial.failed}, unfinished ${initial.unfinished}), ${fmt(initial.seconds, 1)} s |`);
  console.log(`| held: sip_registrations with expiry in the future, after registering / after the sweep | ${held} / ${heldAfter} (API sample: ${sampleRegistered}/${sample.length} \`registered\`) |`);
  for (const s of sweep) console.log(`| re-REGISTER at ${s.rate}/s, ${s.attempted} accounts | ${fmt(s.achieved, 0)}/s achieved, failures ${fmt(s.failureRate * 100, 2)} % (${s.failed} failed, ${s.unfinished} unfinished); auth. REGISTER→200 p50 ${fmt(s.p50)} ms, p99 ${fmt(s.p99)} ms; CPU service ${fmt(s.cpuService, 1)} s, Kamailio ${fmt(s.cpuKamailio, 1)} s |`);
  console.log(`| highest REGISTER/s with < 1 % failures | ${best ? `${fmt(best.achieved, 0)}/s (target rate ${best.rate}/s)` : 'none'} |`);
  console.log(`| memory: service RSS before → registered → after calls | ${fmt(mb(mem0.serviceRss))} → ${fmt(mb(mem1.serviceRss))} → ${fmt(mb(mem3.serviceRss))} MB |`);
  console.log(`| memory: Kamailio PSS, all ${mem0.kamailioProcesses} processes, before → registered → after sweep | ${fmt(mb(mem0.kamailioPss))} → ${fmt(mb(mem1.kamailioPss))} → ${fmt(mb(mem2.kamailioPss))} MB (largest process RSS ${fmt(mb(mem2.kamailioRssMax))} MB) |`);
  console.log(`| calls at ${CALL_RATE}/s for ${CALL_SECONDS} s: completed / failed | ${callOk} / ${callFailed} of ${CALLS}; recorded ${callsRecorded} |`);
  console.log(`| call setup: INVITE with digest → 180 Ringing at the door phone | p50 ${fmt(pct(setup, 50), 2)} ms, p95 ${fmt(pct(setup, 95), 2)} ms, p99 ${fmt(pct(setup, 99), 2)} ms, max ${fmt(setup.at(-1) ?? NaN, 2)} ms (${setup.length} calls) |`);
  console.log(`| call failures (SIPp counters) | door phones: ${failures(calls)}; monitors: ${failures(uasResult)} |`);
  console.log(`| back end, one request at a time after the calls: /credentials, /route (site of ${APARTMENTS} apartments) | p50 ${fmt(pct(credMs, 50), 2)} / ${fmt(pct(routeMs, 50), 2)} ms, p99 ${fmt(pct(credMs, 99), 2)} / ${fmt(pct(routeMs, 99), 2)} ms |`);
  console.log(`| first INVITE → 407 | p50 ${fmt(pct(challenge, 50), 2)} ms, p99 ${fmt(pct(challenge, 99), 2)} ms |`);
  console.log(`| load average before / at the calls | ${load0.map((l) => fmt(l, 2)).join(' ')} / ${load1.map((l) => fmt(l, 2)).join(' ')} |`);
  console.log('\nSIPp command lines:');
  for (const c of [...new Set(commands.map((c) => c.replace(/(bench-sip-)[A-Za-z0-9]+/g, '$1XXXX')))]) console.log(`  ${c}`);
  console.log(
    '\n' +
      JSON.stringify({
        bench: 'sip',
        commit,
        accounts: N,
        createSeconds,
        register: { rate: REGISTER_RATE, ok: initial.ok, failed: initial.failed, unfinished: initial.unfinished, seconds: initial.seconds, p50: pct(initial.rtts, 50), p99: pct(initial.rtts, 99) },
        held,
        heldAfter,
        apiSample: { registered: sampleRegistered, of: sample.length },
        sweep,
        bestRegisterRate: best?.achieved ?? null,
        memory: { before: mem0, registered: mem1, afterSweep: mem2, afterCalls: mem3 },
        calls: { rate: CALL_RATE, seconds: CALL_SECONDS, attempted: CALLS, ok: callOk, failed: callFailed, recorded: callsRecorded, outcomes, setup: { p50: pct(setup, 50), p95: pct(setup, 95), p99: pct(setup, 99), max: setup.at(-1) ?? null, n: setup.length }, challenge: { p50: pct(challenge, 50), p99: pct(challenge, 99) } },
        backend: { credentials: { p50: pct(credMs, 50), p99: pct(credMs, 99) }, route: { p50: pct(routeMs, 50), p99: pct(routeMs, 99) } },
        cpuCalls: { service: c1.service - c0.service, kamailio: c1.kamailio - c0.kamailio },
        load: { before: load0, calls: load1 },
      }),
  );
});
