import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { SipStation } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { SIP_ON_FREE_PORTS, startTestService, waitFor } from '../helpers/service.js';

// Issue 17: 512 connections from one address, each sending a request line and a header but never the blank
// line, took every HTTP connection (HTTP_MAX_CONNECTIONS) until Node's 60 s header timeout, and with them
// Kamailio's back end: every REGISTER failed. One address now holds at most its own share, headers must
// complete within seconds, and the back end listens apart.

const SLOW_REQUEST = 'GET /healthz HTTP/1.1\r\nHost: x\r\n';

/** A GET from a chosen source address on a connection of its own: status and body. */
function get(port: number, path: string, localAddress: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress, agent: false, headers: { connection: 'close' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
  });
}

/** Opens sockets from one address that send a request's first lines and never finish its headers. */
async function slowClients(t: { teardown(fn: () => unknown): void }, port: number, count: number, localAddress: string) {
  const sockets: net.Socket[] = [];
  // `refused`: closed without a byte of answer (at accept); `answered`: got something (a 408).
  const state = { closed: 0, answered: 0, refused: 0, get open() { return count - state.closed; } };
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  await Promise.all(
    Array.from({ length: count }, () => new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port, localAddress });
      sockets.push(s);
      s.on('error', () => {});
      let answered = false;
      s.once('data', () => ((answered = true), state.answered++));
      s.once('close', () => (state.closed++, answered || state.refused++, resolve()));
      s.once('connect', () => (s.write(SLOW_REQUEST), resolve()));
    })),
  );
  return state;
}

t.test('512 slow clients from one address: another address gets /readyz and SIP REGISTER answered while they hold on', { skip: !findKamailio() && 'kamailio is not installed (.ci/run installs it)' }, async (t) => {
  // The old header timeout (60 s): the probe's answers arriving while the attack is held are the cap's doing.
  const svc = await startTestService(t, { ...SIP_ON_FREE_PORTS, HTTP_HEADERS_TIMEOUT_MS: '60000' });
  const { sip, ports } = svc.service;
  const installer = await svc.createInstaller();
  const door = (await svc.addDevice(installer.token, '0C1108170001', { type: 0 })).sip;
  const station = new SipStation({ number: door.number, password: door.password, domain: sip!.domain, server: { host: '127.0.0.1', port: sip!.ports.tcp, transport: 'tcp' }, localAddress: '127.0.0.2' });
  t.teardown(() => station.stop());
  await station.start();

  const attack = await slowClients(t, ports.http, 512, '127.0.0.1');
  for (let i = 0; i < 5; i++) {
    const ready = await get(ports.http, '/readyz', '127.0.0.2');
    t.equal(ready.status, 200, `/readyz from another address answers 200 (probe ${i + 1})`);
    t.equal(ready.body.checks.sip, 'ok');
    t.ok(attack.open > 0 && attack.answered === 0, `…while the attack holds its connections (${attack.open} open, none timed out)`);
  }
  t.equal((await station.register()).status, 200, 'a REGISTER from another address is answered');
  t.equal((await station.register()).status, 200, 'and again');
  t.ok(attack.open > 0 && attack.answered === 0, 'the attack is still held: the header timeout has freed none');
  // Over the per-address cap (64 by default; the test's own API calls from 127.0.0.1 count too) the
  // attack's connections were closed at accept, unanswered.
  await waitFor(() => attack.refused, (n) => n >= 512 - 64);
  t.ok(attack.open > 0 && attack.open <= 64, `one address holds at most 64 connections (${attack.open} of the attack's)`);
  t.equal(attack.answered, 0);
});

t.test("headers within the timeout, idle keep-alive closed, one address's connections capped, trusted proxies exempt", async (t) => {
  const svc = await startTestService(t, { HTTP_HEADERS_TIMEOUT_MS: '1000', HTTP_KEEP_ALIVE_TIMEOUT_MS: '1000', HTTP_MAX_CONNECTIONS_PER_ADDRESS: '2', HTTP_TRUST_PROXY: '127.0.0.4' });
  const port = svc.service.ports.http;

  const slow = await slowClients(t, port, 3, '127.0.0.3');
  await waitFor(() => slow.closed, (n) => n === 3);
  t.equal(slow.refused, 1, 'the third connection from one address is closed at accept, unanswered');
  t.equal(slow.answered, 2, 'the two held ones are answered (408) and closed once their headers are late');
  t.equal((await get(port, '/healthz', '127.0.0.3')).status, 200, 'their address is served again');

  const proxied = await slowClients(t, port, 3, '127.0.0.4');
  t.equal((await get(port, '/healthz', '127.0.0.4')).status, 200, 'a trusted proxy is not held to the per-address cap');
  await waitFor(() => proxied.closed, (n) => n === 3);
  t.same([proxied.refused, proxied.answered], [0, 3], 'none of its connections was refused; each got its 408');

  // A keep-alive connection left idle is closed by the server.
  const idle = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.5' });
  t.teardown(() => idle.destroy());
  let reply = '';
  idle.on('data', (d) => (reply += d));
  idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise((resolve) => idle.once('close', resolve));
  t.match(reply, /^HTTP\/1\.1 200 /, 'it was answered, kept alive, then closed when idle');
});

t.test('config: the limits are validated', async (t) => {
  const { loadConfig } = await import('../../src/config.js');
  const c = loadConfig({});
  t.same([c.http.headersTimeoutMs, c.http.requestTimeoutMs, c.http.keepAliveTimeoutMs, c.http.maxConnections, c.http.maxConnectionsPerAddress], [5000, 300_000, 5000, 512, 64]);
  t.same(c.sip.backend, { host: '127.0.0.1', port: 0 });
  t.throws(() => loadConfig({ HTTP_HEADERS_TIMEOUT_MS: '10000', HTTP_REQUEST_TIMEOUT_MS: '5000' }), /HTTP_HEADERS_TIMEOUT_MS/);
  t.throws(() => loadConfig({ SIP_SERVER: 'sip.example.com', SIP_BACKEND_TOKEN: 'a'.repeat(24) }), /SIP_BACKEND_PORT/, 'an external Kamailio needs a known back-end port');
  t.equal(loadConfig({ SIP_SERVER: 'sip.example.com', SIP_BACKEND_TOKEN: 'a'.repeat(24), ROLE: 'gateway' }).sip.backend.port, 0, 'a gateway serves no back end');
});

t.test("Kamailio's back end is on a listener of its own, not on the public port nor in /docs", { skip: !findKamailio() && 'kamailio is not installed (.ci/run installs it)' }, async (t) => {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const { ports } = svc.service;
  t.ok(ports.sipBackend && ports.sipBackend !== ports.http, 'the back end has its own port');
  const spec = (await svc.api('GET', '/docs/json', { token: null })).body;
  t.same(Object.keys(spec.paths).filter((p) => p.startsWith('/internal')), [], 'the public OpenAPI document lists no /internal route');
  const onPublic = await svc.api('GET', '/internal/sip/credentials?username=1001', { token: null });
  t.same([onPublic.status, onPublic.body.error.code], [404, 'not_found'], 'the public port has no /internal/sip');

  const backend = `http://127.0.0.1:${ports.sipBackend}/internal/sip`;
  const anonymous = await fetch(`${backend}/credentials?username=1001`);
  t.equal(anonymous.status, 401, 'the back end wants its token');
  t.same(Object.keys(((await anonymous.json()) as { error: object }).error), ['code', 'message', 'details'], 'with the same error body as the API');
  t.equal((await fetch(`http://127.0.0.1:${ports.sipBackend}/docs/json`)).status, 404, 'and serves nothing else');
  const installer = await svc.createInstaller();
  const door = (await svc.addDevice(installer.token, '0C1108170002', { type: 0 })).sip;
  const station = new SipStation({ number: door.number, password: door.password, domain: svc.service.sip!.domain, server: { host: '127.0.0.1', port: svc.service.sip!.ports.udp, transport: 'udp' } });
  t.teardown(() => station.stop());
  await station.start();
  t.equal((await station.register()).status, 200, 'Kamailio reaches it: a REGISTER is authenticated');
});
