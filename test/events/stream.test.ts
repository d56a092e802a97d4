import t from 'tap';
import { startTestService, waitFor } from '../helpers/service.js';

// Issue 19, "Live stream": GET /api/v1/events as Server-Sent Events, scoped to what the caller may see,
// resumed with Last-Event-ID without a gap or a repeat.

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string | null) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, ...(body === undefined ? {} : { body }) });
const api = as(alice.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

interface Sse {
  id: string;
  event: string;
  data: any;
}

/** A stream as a script reads it: frames parsed as they come, closed with `stop`. */
function stream(token: string, headers: Record<string, string> = {}, query = '') {
  const frames: Sse[] = [];
  const control = new AbortController();
  const waiters = new Set<() => void>();
  const done = (async () => {
    const res = await fetch(`${svc.httpUrl}/api/v1/events${query}`, { headers: { authorization: `Bearer ${token}`, ...headers }, signal: control.signal });
    if (res.status !== 200) return res.status;
    let buffer = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += Buffer.from(chunk).toString('utf8');
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const f: Record<string, string> = {};
          for (const line of block.split('\n')) {
            const i = line.indexOf(': ');
            if (i > 0 && !line.startsWith(':')) f[line.slice(0, i)] = line.slice(i + 2);
          }
          if (f.event) frames.push({ id: f.id ?? '', event: f.event, data: JSON.parse(f.data ?? 'null') });
          for (const w of [...waiters]) w();
        }
      }
    } catch {
      /* aborted */
    }
    return 200;
  })();
  return {
    frames,
    done,
    until(accept: (f: Sse[]) => boolean, timeoutMs = 60_000): Promise<Sse[]> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`stream: got ${frames.map((f) => f.event).join(', ')}`)), timeoutMs);
        const check = () => {
          if (!accept(frames)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(frames);
        };
        waiters.add(check);
        check();
      });
    },
    stop: () => control.abort(),
  };
}

const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Live', timeZone: 'Europe/Berlin' }), 201);
const other = await ok(api('POST', '/sites', { kind: 'community', name: 'Elsewhere', timeZone: 'Europe/Berlin' }), 201);
const DOOR = '0C1119300001';
await svc.addDevice(alice.token, DOOR, { relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
await ok(api('PATCH', `/devices/${DOOR}`, { siteId: site.id }));
const pm = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@live.test', siteIds: [site.id] }), 201);
const otherPm = await ok(api('POST', '/property-managers', { name: 'Oscar', email: 'oscar@live.test', siteIds: [other.id] }), 201);

t.test('the stream shows events as they happen; a reconnect with Last-Event-ID goes on without a gap or a repeat', async (t) => {
  const mine = stream(alice.token);
  const bobs = stream(bob.token);
  const paulas = stream(pm.token.token, {}, '?types=door.opened');
  const oscars = stream(otherPm.token.token);
  const door = svc.device(DOOR, { reconnect: { minMs: 50, maxMs: 200 } });
  door.start();
  await waitFor(() => door.config.get('Config.DoorSetting.RELAY.Enable1'), (v) => v === '1');
  await mine.until((f) => f.some((x) => x.event === 'device.online'));
  t.equal((await api('POST', `/devices/${DOOR}/relays/1/open`)).status, 200);
  await mine.until((f) => f.some((x) => x.event === 'door.opened'));
  const opened = mine.frames.find((f) => f.event === 'door.opened')!;
  t.match(opened.data, { type: 'door.opened', data: { mac: DOOR, method: 'remote' } });
  t.match(opened.data.id, /^[0-9a-f-]{36}$/, 'with the webhook-id');
  await paulas.until((f) => f.length === 1);
  t.same(paulas.frames.map((f) => f.event), ['door.opened'], "the site's property manager, only the types asked for");
  mine.stop();
  const last = mine.frames.at(-1)!.id;

  // Missed while away: two more openings.
  for (let i = 0; i < 2; i++) t.equal((await api('POST', `/devices/${DOOR}/relays/1/open`)).status, 200);
  await waitFor(() => svc.sql<{ n: number }>("SELECT count(*)::int AS n FROM outbound_events WHERE type = 'door.opened'"), (r) => r[0]!.n === 3);
  const again = stream(alice.token, { 'last-event-id': last });
  await again.until((f) => f.filter((x) => x.event === 'door.opened').length === 2);
  // Every event of Alice from the first one the stream showed on, each once, across the reconnect.
  const rows = await svc.sql<{ event_id: string }>('SELECT event_id FROM outbound_events WHERE installer_id = $1 AND endpoint_id IS NULL ORDER BY id', [alice.id]);
  const expected = rows.map((r) => r.event_id).slice(rows.findIndex((r) => r.event_id === mine.frames[0]!.data.id));
  await again.until((f) => mine.frames.length + f.length >= expected.length);
  const ids = [...mine.frames, ...again.frames].map((f) => f.data.id);
  t.equal(new Set(ids).size, ids.length, 'no event twice');
  t.same([...ids].sort(), [...expected].sort(), 'every event of Alice, once, across the reconnect');
  again.stop();
  bobs.stop();
  oscars.stop();
  paulas.stop();
  t.equal(bobs.frames.length, 0, "Bob's stream shows nothing of Alice's");
  t.equal(oscars.frames.length, 0, "another site's property manager sees nothing");
  await door.stop();
});

t.test('refused: anonymous, an unknown type, an app, too many streams', async (t) => {
  t.equal((await fetch(`${svc.httpUrl}/api/v1/events`)).status, 401);
  t.equal((await api('GET', '/events?types=nope')).status, 400);
  t.equal((await fetch(`${svc.httpUrl}/api/v1/events`, { headers: { authorization: `Basic ${Buffer.from('5926100001:x').toString('base64')}` } })).status, 401, "an app's credentials");
  const five = Array.from({ length: 5 }, () => stream(bob.token));
  const sixth = await waitFor(() => fetch(`${svc.httpUrl}/api/v1/events`, { headers: { authorization: `Bearer ${bob.token}` } }).then((r) => r.status), (s) => s === 429);
  t.equal(sixth, 429, 'at most 5 streams per account');
  for (const s of five) s.stop();
  await Promise.all(five.map((s) => s.done));
  const reopened = await waitFor(
    async () => {
      const c = new AbortController();
      const r = await fetch(`${svc.httpUrl}/api/v1/events`, { headers: { authorization: `Bearer ${bob.token}` }, signal: c.signal });
      c.abort();
      return r.status;
    },
    (s) => s === 200,
  );
  t.equal(reopened, 200, 'a closed stream frees its place');
});
