import type { ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  SipStation,
  assertedUser,
  takeStreamMessage,
  type ActiveCall, type DtmfEvent, type IncomingCall,
  type SipStationOptions,
} from '../../simulators/sip/station.js';
import { spawnTied } from '../../src/infra/tied-child.js';

const KAMAILIO = '/usr/sbin/kamailio';
const MODULES = '/usr/lib/x86_64-linux-gnu/kamailio/modules/';
const DOMAIN = 'sim.test';
const PASSWORDS: Record<string, string> = { '100': 'door-100', '200': 'monitor-200', '300': 'app-300' };

/** Registrar + proxy with digest auth against an in-config htable, SIP over UDP/TCP and WebSocket. */
function kamailioConfig(sipPort: number, wsPort: number): string {
  const users = Object.entries(PASSWORDS)
    .map(([user, password]) => `  $sht(users=>${user}) = "${password}";`)
    .join('\n');
  return `#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
tcp_children=2
mpath="${MODULES}"
listen=udp:127.0.0.1:${sipPort}
listen=tcp:127.0.0.1:${sipPort}
listen=tcp:127.0.0.1:${wsPort}
alias="${DOMAIN}"
auto_aliases=no
tcp_accept_no_cl=yes

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "htable.so"
loadmodule "nathelper.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"

modparam("usrloc", "db_mode", 0)
modparam("htable", "htable", "users=>size=4;")
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "received_avp", "$avp(RECEIVED)")

event_route[htable:mod-init] {
${users}
}

event_route[core:worker-one-init] {
  xlog("L_ALERT", "SIP-SIM-READY\\n");
}

request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  # WebSocket peers cannot be reached by their Contact: remember the connection they came in on.
  if (nat_uac_test("64")) {
    force_rport();
    if (is_method("REGISTER")) fix_nated_register();
    else if (!add_contact_alias()) { sl_send_reply("400", "Bad Contact"); exit; }
  }
  if (has_totag()) {
    if (loose_route()) {
      handle_ruri_alias();
      t_relay();
    } else if (is_method("ACK")) {
      if (t_check_trans()) t_relay();
    } else {
      sl_send_reply("404", "Not here");
    }
    exit;
  }
  if (is_method("CANCEL")) {
    if (t_check_trans()) t_relay();
    exit;
  }
  t_check_trans();
  if (!pv_auth_check("$fd", "$sht(users=>$fU)", "0", "1")) {
    auth_challenge("$fd", "0");
    exit;
  }
  consume_credentials();
  if (is_method("REGISTER")) {
    if (!save("location")) sl_reply_error();
    exit;
  }
  record_route();
  if (!lookup("location")) {
    t_newtran();
    t_reply("404", "Not Found");
    exit;
  }
  t_on_reply("FROM_WS");
  if (!t_relay()) sl_reply_error();
}

onreply_route[FROM_WS] {
  if (nat_uac_test("64")) add_contact_alias();
}

event_route[xhttp:request] {
  set_reply_close();
  set_reply_no_connect();
  if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm =~ "GET") {
    if (ws_handle_handshake()) exit;
  }
  xhttp_reply("404", "Not Found", "", "");
}
`;
}

/** A port free for both TCP and UDP on 127.0.0.1 (Kamailio listens on both). */
async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    server.close();
    const udp = dgram.createSocket('udp4');
    const free = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    udp.close();
    if (free) return port;
  }
}

interface RunningKamailio {
  sipPort: number;
  wsPort: number;
  stop(): Promise<void>;
}

async function startKamailio(): Promise<RunningKamailio> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kamailio-'));
  const sipPort = await freePort();
  let wsPort = await freePort();
  while (wsPort === sipPort) wsPort = await freePort();
  const cfg = path.join(dir, 'kamailio.cfg');
  await writeFile(cfg, kamailioConfig(sipPort, wsPort));
  const child: ChildProcess = spawnTied(
    KAMAILIO,
    ['-f', cfg, '-DD', '-E', '-w', dir, '-Y', dir, '-P', path.join(dir, 'kamailio.pid')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      log += chunk;
      if (log.includes('SIP-SIM-READY')) resolve();
    });
    void exited.then(() => reject(new Error(`kamailio exited during startup:\n${log}`)));
  });
  return {
    sipPort,
    wsPort,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

t.test("a door phone's `by`: a P-Asserted-Identity's number, when the server sends one", async (t) => {
  t.equal(assertedUser('<sip:5926100012@sip.example>'), '5926100012');
  t.equal(assertedUser('"Lily" <sip:5926100012@10.0.0.1;transport=udp>'), '5926100012');
  t.equal(assertedUser('sips:5926100012@sip.example'), '5926100012');
  t.equal(assertedUser('<sip:lily@sip.example>'), undefined, 'not a station number: the dialog party is used instead');
  t.equal(assertedUser(undefined), undefined);
});

t.test('stream framing cuts SIP messages by Content-Length', async (t) => {
  const info = 'INFO sip:a@b SIP/2.0\r\nContent-Length: 4\r\n\r\nab\u00e9';
  const bye = 'BYE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n';
  const stream = Buffer.from(`\r\n\r\n${info}${bye}`);
  const [first, rest] = takeStreamMessage(stream);
  t.equal(first, info, 'keepalive skipped, body length counted in bytes');
  const [second, empty] = takeStreamMessage(rest);
  t.equal(second, bye, 'compact Content-Length form');
  t.equal(empty.length, 0);
  const half = Buffer.from(info).subarray(0, 30);
  t.same(takeStreamMessage(half)[0], undefined, 'half a message waits for more');
});

t.test('SIP stations against a real Kamailio', { skip: existsSync(KAMAILIO) ? false : 'kamailio not installed' }, async (t) => {
  const kamailio = await startKamailio();
  const stations: SipStation[] = [];
  t.teardown(async () => {
    await Promise.allSettled(stations.map((station) => station.stop()));
    await kamailio.stop();
  });
  const station = (
    number: string,
    transport: SipStationOptions['server']['transport'],
    localAddress: string,
    password = PASSWORDS[number] ?? '',
  ): SipStation => {
    const port = transport === 'ws' ? kamailio.wsPort : kamailio.sipPort;
    const created = new SipStation({
      number,
      password,
      domain: DOMAIN,
      server: { host: '127.0.0.1', port, transport },
      localAddress,
      displayName: `Station ${number}`,
      logger: process.env.SIP_DEBUG ? (line) => console.error(line) : undefined,
    });
    stations.push(created);
    return created;
  };

  const door = station('100', 'udp', '127.0.0.2');
  const monitor = station('200', 'tcp', '127.0.0.3');
  const app = station('300', 'ws', '127.0.0.4');
  const intruder = station('100', 'udp', '127.0.0.5', 'wrong-password');
  await Promise.all([door.start(), monitor.start(), app.start(), intruder.start()]);

  await t.test('registration', async (t) => {
    const registered = once(monitor, 'registered');
    const results = await Promise.all([door.register(), monitor.register(), app.register()]);
    t.same(
      results.map((r) => r.status),
      [200, 200, 200],
      'udp, tcp and ws stations register',
    );
    await registered;
    const refused = await intruder.register();
    t.not(refused.status, 200, `wrong password is refused (${refused.status})`);
    t.ok([401, 403].includes(refused.status), 'with an auth failure status');
  });

  await t.test('door calls the monitor, sends DTMF, hangs up', async (t) => {
    monitor.autoAnswer = { ringMs: 50 };
    const incoming = once(monitor, 'incoming') as Promise<[IncomingCall]>;
    const ringing = once(monitor, 'ringing');
    const answeredAtMonitor = once(monitor, 'answered') as Promise<[ActiveCall]>;

    const call = await door.call('200', { timeoutMs: 10_000 });
    const [invite] = await incoming;
    t.equal(invite.from, '100', 'monitor sees the door as caller');
    t.equal(invite.to, '200', 'and itself as the dialled number');
    await ringing;
    const [monitorCall] = await answeredAtMonitor;
    t.equal(monitorCall.callId, call.callId, 'both ends share the Call-ID');

    const dtmf = once(monitor, 'dtmf') as Promise<[DtmfEvent]>;
    await call.sendDtmf('5');
    const [tone] = await dtmf;
    t.same(tone, { callId: call.callId, digit: '5', from: '100' }, 'monitor receives digit 5 via INFO');

    const endedAtMonitor = once(monitor, 'ended');
    await call.hangup();
    t.same(await call.ended, { by: 'local' }, 'door ended the call itself');
    t.same(await endedAtMonitor, [{ callId: call.callId, by: 'remote' }], 'monitor sees the remote hangup');
  });

  await t.test('monitor calls the app over WebSocket; the app hangs up', async (t) => {
    app.autoAnswer = { ringMs: 0 };
    const answeredAtApp = once(app, 'answered') as Promise<[ActiveCall]>;
    const call = await monitor.call('300', { timeoutMs: 10_000 });
    const [appCall] = await answeredAtApp;

    const dtmf = once(monitor, 'dtmf') as Promise<[DtmfEvent]>;
    await appCall.sendDtmf('#');
    t.equal((await dtmf)[0].digit, '#', 'DTMF flows from the ws station too');

    await appCall.hangup();
    t.same(await call.ended, { by: 'remote' }, 'monitor sees the app hang up');
  });

  await t.test('calling an unregistered number fails', async (t) => {
    const error = await door.call('999', { timeoutMs: 10_000 }).then(
      () => undefined,
      (e: unknown) => e as { status?: number },
    );
    t.ok(error && [404, 480].includes(error.status ?? 0), `rejected with ${error?.status}`);
  });

  await t.test('stop unregisters', async (t) => {
    const unregistered = once(door, 'unregistered');
    await door.stop();
    await unregistered;
    t.pass('door unregistered on stop');
  });
});
