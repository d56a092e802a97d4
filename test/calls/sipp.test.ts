import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { findKamailio } from '../../src/calls/kamailio.js';
import { freeUdpPort } from '../../src/infra/net.js';
import { authField, bindFailed, describe, findSipp, runSippOnFreePort, startSipp, writeInjection, type SippOptions, type SippResult } from '../../bench/lib/sipp.js';
import { startTestService, waitFor, SIP_ON_FREE_PORTS } from '../helpers/service.js';

// SIPp (an independent SIP implementation) over UDP against the Kamailio the service starts itself.
if (!findKamailio()) t.plan(0, 'kamailio is not installed (.ci/run installs it)');
else if (!findSipp()) t.plan(0, 'sipp is not installed (Debian: apt-get install sip-tester)');
else await run();

async function run() {
  const AUTH_FAILURES = 3;
  const svc = await startTestService(t, {
    ...SIP_ON_FREE_PORTS,
    SIP_AUTH_FAILURES: String(AUTH_FAILURES),
  });
  const sip = svc.service.sip!;
  const target = `127.0.0.1:${sip.ports.udp}`;
  const dir = mkdtempSync(join(tmpdir(), 'sipp-test-'));
  if (!process.env.SIPP_KEEP) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  else console.error(`SIPp files: ${dir}`);
  const alice = await svc.createInstaller('Alice');
  const A = {
    get: (path: string) => svc.api('GET', `/api/v1${path}`, { token: alice.token }),
    post: (path: string, body: unknown = {}) => svc.api('POST', `/api/v1${path}`, { token: alice.token, body }),
    patch: (path: string, body: unknown) => svc.api('PATCH', `/api/v1${path}`, { token: alice.token, body }),
  };
  async function device(mac: string, type: number) {
    const d = await svc.addDevice(alice.token, mac, { type });
    return { mac, number: d.sip.number as string, password: d.sip.password as string };
  }

  let runs = 0;
  type RunOptions = Omit<SippOptions, 'dir' | 'name' | 'localPort' | 'timeoutSeconds'> & { timeoutSeconds?: number };
  /**
   * One bounded SIPp run from a free UDP port of `localIp` (picked again if another process takes it
   * first); `o` may depend on the port (a Contact naming it). Every run writes its own files into `dir`.
   */
  async function sipp(o: RunOptions | ((port: number) => RunOptions)): Promise<SippResult> {
    // A run whose options name its port (a Contact) is made from 127.0.0.1.
    return runSippOnFreePort(typeof o === 'function' ? '127.0.0.1' : o.localIp, (port) => {
      const opts = typeof o === 'function' ? o(port) : o;
      return { dir, name: `run${++runs}`, localPort: port, timeoutSeconds: 30, recvTimeoutMs: 10_000, ...opts, extra: [...(opts.extra ?? []), ...(process.env.SIPP_KEEP ? ['-trace_msg'] : [])], target: opts.target ?? target };
    });
  }
  const injection = (rows: string[][]) => writeInjection(join(dir, `inject${++runs}.csv`), rows);
  const ok = (t: Test, r: SippResult, what: string) => {
    t.equal(r.code, 0, what, { diagnostic: r.code !== 0, sipp: describe(r) });
    t.match(r.stats, { 'SuccessfulCall(C)': '1', 'FailedCall(C)': '0' }, `${what}: SIPp counts one successful scenario, no failed one`, { sipp: r.code !== 0 ? describe(r) : undefined });
  };

  t.test('a device registers with SIPp: 401, then 200 with the digest; the API shows it registered', async (t) => {
    const door = await device('0C1109000001', 0);
    let port = 0;
    const r = await sipp((p) => ((port = p), { byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', calls: 1, stats: true, injection: injection([[door.number, authField(door.number, door.password), `127.0.0.1:${p}`, sip.domain]]) }));
    ok(t, r, 'REGISTER → 401 → REGISTER with digest → 200');
    const view = await waitFor(() => A.get(`/devices/${door.mac}`), (res) => res.body.sipStatus === 'registered');
    t.ok(view.body.sipLastRegisteredAt, 'the last registration is shown');
    const [row] = await svc.sql('SELECT transport, source, user_agent FROM sip_registrations WHERE sip_number = $1', [door.number]);
    t.match(row, { transport: 'udp', source: `127.0.0.1:${port}`, user_agent: 'SIPp' }, 'the registration is recorded with its source');
  });

  t.test(`a wrong password is challenged again; after ${AUTH_FAILURES} failures the source address gets 403`, async (t) => {
    const door = await device('0C1109000002', 0);
    // From 127.0.0.2: the block is per source address and must not reach the other tests (127.0.0.1).
    const wrong = injection([[door.number, authField(door.number, 'not-the-password'), '127.0.0.2:5999', sip.domain]]);
    for (let i = 1; i <= AUTH_FAILURES; i++) {
      const r = await sipp({ byeOnAbort: false, scenario: 'register-refused.xml', localIp: '127.0.0.2', calls: 1, stats: true, injection: wrong });
      ok(t, r, `wrong password ${i}: REGISTER with digest → 401 again`);
    }
    const right = injection([[door.number, authField(door.number, door.password), '127.0.0.2:5999', sip.domain]]);
    const blocked = await sipp({ byeOnAbort: false, scenario: 'register-blocked.xml', localIp: '127.0.0.2', calls: 1, stats: true, injection: right });
    ok(t, blocked, `after ${AUTH_FAILURES} failures even the right account gets 403 from that address`);
    const elsewhere = await sipp((p) => ({ byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', calls: 1, stats: true, injection: injection([[door.number, authField(door.number, door.password), `127.0.0.1:${p}`, sip.domain]]) }));
    ok(t, elsewhere, 'another source address still registers');
  });

  t.test('a SIPp door phone calls 101: the SIPp monitor rings and answers, the call is recorded as completed', async (t) => {
    const site = (await A.post('/sites', { kind: 'community', name: 'SIPp calls', timeZone: 'Europe/Berlin' })).body;
    const building = (await A.post(`/sites/${site.id}/buildings`, { name: 'A' })).body;
    const flat = (await A.post(`/buildings/${building.id}/apartments`, { number: '101' })).body;
    const door = await device('0C1109000010', 0);
    const monitor = await device('0C1109000011', 2);
    t.equal((await A.patch(`/devices/${door.mac}`, { siteId: site.id, buildingId: building.id })).status, 200);
    t.equal((await A.patch(`/devices/${monitor.mac}`, { siteId: site.id, apartmentId: flat.id })).status, 200);

    // The monitor: a SIPp UAS on one port, registered (by a SIPp UAC) with its Contact there. A UAS that
    // could not take its port (another process took it first) is started again on another.
    let call!: SippResult;
    let answered!: SippResult;
    for (let attempt = 1; attempt <= 5; attempt++) {
      const uasPort = await freeUdpPort('127.0.0.1');
      const uas = startSipp({ scenario: 'monitor-uas.xml', dir, name: `uas${attempt}`, localIp: '127.0.0.1', localPort: uasPort, calls: 1, timeoutSeconds: 60, recvTimeoutMs: 50_000, stats: true, extra: process.env.SIPP_KEEP ? ['-trace_msg'] : [] });
      t.teardown(() => void (uas.child.exitCode === null && uas.child.kill('SIGKILL')));
      const reg = await sipp({ byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', calls: 1, stats: true, injection: injection([[monitor.number, authField(monitor.number, monitor.password), `127.0.0.1:${uasPort}`, sip.domain]]) });
      ok(t, reg, "the monitor's account registers with the UAS as its Contact");
      call = await sipp({ scenario: 'door-call.xml', localIp: '127.0.0.1', calls: 1, stats: true, rtt: true, injection: injection([[door.number, authField(door.number, door.password), '101', sip.domain]]) });
      // A failed call leaves the UAS waiting for an INVITE that never comes: it ends now, not at its timeout.
      if (call.code !== 0 && uas.child.exitCode === null) uas.child.kill('SIGKILL');
      answered = await uas.done;
      if (!bindFailed(answered)) break;
    }
    ok(t, call, 'INVITE → 407 → INVITE with digest → 180 → 200 → ACK → BYE → 200');
    t.ok(call.rtt.some((r) => r.rtd === 'setup'), 'the setup time (authenticated INVITE → 180) was measured', { rtt: call.rtt });
    ok(t, answered, 'the monitor UAS got INVITE, answered, and got ACK and BYE');

    const listed = await waitFor(() => A.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'completed');
    t.match(listed.body.items[0], { caller: door.number, dialled: '101', apartmentId: flat.id, answeredBy: monitor.number, outcome: 'completed' });
    t.ok(listed.body.items[0].answeredAt && listed.body.items[0].endedAt, 'answered and ended are recorded');
  });
}
