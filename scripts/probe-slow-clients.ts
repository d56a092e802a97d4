// Measures what a second address sees while one address holds slow HTTP connections, opening another
// whenever one is closed (issue 17, item 2):
// `tsx scripts/probe-slow-clients.ts [sockets=512] [seconds=20]` against a test service with its own
// Kamailio (PostgreSQL and Redis on 127.0.0.1). Prints the probe's latencies; asserts nothing.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { SipStation } from '../simulators/sip/station.js';
import { startTestService, SIP_ON_FREE_PORTS } from '../test/helpers/service.js';

// The attack (plain JS for `node -e`): argv port, count; prints {open, closed} once all connected and on SIGUSR2.
const ATTACK = `
const net = require('node:net');
const [port, count] = process.argv.slice(1).map(Number);
let open = 0, closed = 0, connected = 0;
const one = () => {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.1' });
  s.on('error', () => {});
  s.resume();
  let held = false;
  s.once('connect', () => { held = true; open++; s.write('GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n'); if (++connected === count) report(); });
  s.once('close', () => { closed++; if (held) open--; setImmediate(one); });
};
const report = () => process.stdout.write(JSON.stringify({ open, closed }) + '\\n');
process.on('SIGUSR2', report);
for (let i = 0; i < count; i++) one();
`;
const sockets = Number(process.argv[2] ?? 512);
const seconds = Number(process.argv[3] ?? 20);
const teardowns: (() => unknown)[] = [];
const t = { teardown: (fn: () => unknown) => void teardowns.push(fn) };
try {
  const svc = await startTestService(t, SIP_ON_FREE_PORTS);
  const sip = svc.service.sip!;
  const installer = await svc.createInstaller();
  const door = (await svc.addDevice(installer.token, '0C1108FF0001', { type: 0 })).sip;
  const station = new SipStation({ number: door.number, password: door.password, domain: sip.domain, server: { host: '127.0.0.1', port: sip.ports.tcp, transport: 'tcp' }, localAddress: '127.0.0.2' });
  teardowns.push(() => station.stop());
  await station.start();

  // The attacker, in a process of its own, opens `sockets` connections and another whenever one is closed.
  const attacker = spawn(process.execPath, ['-e', ATTACK, String(svc.service.ports.http), String(sockets)], { stdio: ['ignore', 'pipe', 'inherit'] });
  teardowns.push(() => attacker.kill('SIGKILL'));
  const lines = createInterface({ input: attacker.stdout! });
  const report = (): Promise<{ open: number; closed: number }> => new Promise((resolve) => lines.once('line', (l) => resolve(JSON.parse(l))));
  const opened = await report();
  console.log(`attack: ${sockets} sockets from 127.0.0.1 opened (${opened.open} open, ${opened.closed} closed by the server)`);
  const attackStart = Date.now();
  const http: number[] = [];
  const sipTimes: number[] = [];
  let httpFailed = 0;
  let firstOk: number | null = null;
  let sipFailed = 0;
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const a = Date.now();
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: svc.service.ports.http, localAddress: '127.0.0.2' });
      let text = '';
      const timer = setTimeout(() => (s.destroy(), resolve(false)), 5000);
      s.on('error', () => (clearTimeout(timer), resolve(false)));
      s.on('data', (d) => {
        text += d;
        if (/\r\n\r\n/.test(text)) (clearTimeout(timer), s.destroy(), resolve(/^HTTP\/1\.1 200/.test(text)));
      });
      s.on('close', () => (clearTimeout(timer), resolve(false)));
      s.write('GET /readyz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n');
    });
    if (ok) {
      http.push(Date.now() - a);
      firstOk ??= Date.now() - attackStart;
    } else httpFailed++;
    const b = Date.now();
    const reg = await Promise.race([station.register(), new Promise<{ status: number }>((r) => setTimeout(() => r({ status: 0 }), 5000))]);
    if (reg.status === 200) sipTimes.push(Date.now() - b);
    else sipFailed++;
    await new Promise((r) => setTimeout(r, 100));
  }
  attacker.kill('SIGUSR2');
  const { open, closed: closedByServer } = await report();
  const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : NaN);
  console.log(`over ${Math.round((Date.now() - attackStart) / 1000)} s; attack sockets open at the end: ${open}; closed by the server (each reopened at once): ${closedByServer}`);
  console.log(`first /readyz 200 after ${firstOk} ms of the attack`);
  console.log(`/readyz from 127.0.0.2: ${http.length} x 200, ${httpFailed} failed; ms p50 ${pct(http, 50)} p95 ${pct(http, 95)} max ${Math.max(...http)}`);
  console.log(`REGISTER from 127.0.0.2: ${sipTimes.length} x 200, ${sipFailed} failed or not 200; ms p50 ${pct(sipTimes, 50)} p95 ${pct(sipTimes, 95)} max ${Math.max(...sipTimes)}`);
} finally {
  for (const fn of teardowns.reverse()) await Promise.resolve(fn()).catch(() => {});
}
