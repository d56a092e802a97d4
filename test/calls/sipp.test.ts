import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { findKamailio } from '../../src/calls/kamailio.js';
import { freePort } from '../../src/infra/net.js';
import { authField, describe, findSipp, runSipp, startSipp, writeInjection, type SippOptions, type SippResult } from '../../bench/lib/sipp.js';
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
  /** One bounded SIPp run from a free port of `localIp`; every run writes its own files into `dir`. */
  async function sipp(o: Omit<SippOptions, 'dir' | 'name' | 'localPort' | 'timeoutSeconds'> & { localPort?: number; timeoutSeconds?: number }): Promise<SippResult> {
    const name = `run${++runs}`;
    return runSipp({ dir, name, localPort: o.localPort ?? (await freePort()), timeoutSeconds: 30, recvTimeoutMs: 10_000, ...o, extra: [...(o.extra ?? []), ...(process.env.SIPP_KEEP ? ['-trace_msg'] : [])], target: o.target ?? target });
  }
  const injection = (rows: string[][]) => writeInjection(join(dir, `inject${++runs}.csv`), rows);
  const ok = (t: Test, r: SippResult, what: string) => {
    t.equal(r.code, 0, what, { diagnostic: r.code !== 0, sipp: describe(r) });
    t.match(r.stats, { 'SuccessfulCall(C)': '1', 'FailedCall(C)': '0' }, `${what}: SIPp counts one successful scenario, no failed one`, { sipp: r.code !== 0 ? describe(r) : undefined });
  };

  t.test('a device registers with SIPp: 401, then 200 with the digest; the API shows it registered', async (t) => {
    const door = await device('0C1109000001', 0);
    const port = await freePort();
    const r = await sipp({ byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', localPort: port, calls: 1, stats: true, injection: injection([[door.number, authField(door.number, door.password), `127.0.0.1:${port}`, sip.domain]]) });
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
    const port = await freePort();
    const elsewhere = await sipp({ byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', localPort: port, calls: 1, stats: true, injection: injection([[door.number, authField(door.number, door.password), `127.0.0.1:${port}`, sip.domain]]) });
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

    // The monitor: a SIPp UAS on one port, registered (by a SIPp UAC) with its Contact there.
    const uasPort = await freePort();
    const uas = startSipp({ scenario: 'monitor-uas.xml', dir, name: 'uas', localIp: '127.0.0.1', localPort: uasPort, calls: 1, timeoutSeconds: 60, recvTimeoutMs: 50_000, stats: true, extra: process.env.SIPP_KEEP ? ['-trace_msg'] : [] });
    t.teardown(() => void (uas.child.exitCode === null && uas.child.kill('SIGKILL')));
    const reg = await sipp({ byeOnAbort: false, scenario: 'register.xml', localIp: '127.0.0.1', calls: 1, stats: true, injection: injection([[monitor.number, authField(monitor.number, monitor.password), `127.0.0.1:${uasPort}`, sip.domain]]) });
    ok(t, reg, "the monitor's account registers with the UAS as its Contact");

    const call = await sipp({ scenario: 'door-call.xml', localIp: '127.0.0.1', calls: 1, stats: true, rtt: true, injection: injection([[door.number, authField(door.number, door.password), '101', sip.domain]]) });
    ok(t, call, 'INVITE → 407 → INVITE with digest → 180 → 200 → ACK → BYE → 200');
    t.ok(call.rtt.some((r) => r.rtd === 'setup'), 'the setup time (authenticated INVITE → 180) was measured', { rtt: call.rtt });
    const answered = await uas.done;
    ok(t, answered, 'the monitor UAS got INVITE, answered, and got ACK and BYE');

    const listed = await waitFor(() => A.get(`/sites/${site.id}/calls`), (r) => r.body.items?.[0]?.outcome === 'completed');
    t.match(listed.body.items[0], { caller: door.number, dialled: '101', apartmentId: flat.id, answeredBy: monitor.number, outcome: 'completed' });
    t.ok(listed.body.items[0].answeredAt && listed.body.items[0].endedAt, 'answered and ended are recorded');
  });
}
