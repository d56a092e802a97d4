import t from 'tap';
import { eventsOut } from '../../src/roles/engine.js';
import { AddressPolicy } from '../../src/webhooks/ssrf.js';
import { startReceiver } from '../helpers/receiver.js';
import { startTestService, waitFor } from '../helpers/service.js';

// Issue 19, "Webhooks": endpoints per installer (and distributor), Standard Webhooks signatures checked by
// a receiver outside the service, retries with backoff (Retry-After honoured), 410 disabling, rotation
// with two signatures, the delivery log and replays, and nobody else's events.

const svc = await startTestService(t, { WEBHOOK_ALLOWED_NETWORKS: '127.0.0.1/32', WEBHOOK_RETRY_BASE_MS: '50', WEBHOOK_TIMEOUT_MS: '3000', PRESENCE_OFFLINE_GRACE_SECONDS: '60' });
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string | null | undefined) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, ...(body === undefined ? {} : { body }) });
const api = as(alice.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};
const presence = eventsOut!.presence;
let clock = Date.now();
presence.now = () => new Date(clock);

const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Hooks', timeZone: 'Europe/Berlin' }), 201);
const DOOR = '0C1119200001';
await svc.addDevice(alice.token, DOOR, { relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
await ok(api('PATCH', `/devices/${DOOR}`, { siteId: site.id }));

const receiver = await startReceiver(t);
const bobs = await startReceiver(t);
const everything = await startReceiver(t);

t.test('endpoints: the secret once, the URL checked, only the owner sees them', async (t) => {
  const created = await ok(api('POST', '/webhooks', { url: receiver.url, description: 'ops' }), 201);
  t.match(created.secret, /^whsec_[A-Za-z0-9+/=]{32}$/);
  receiver.secrets.push(created.secret);
  t.notOk(JSON.stringify(await ok(api('GET', `/webhooks/${created.id}`))).includes(created.secret), 'never shown again');
  const bobHook = await ok(as(bob.token)('POST', '/webhooks', { url: bobs.url }), 201);
  bobs.secrets.push(bobHook.secret);
  const distributorHook = await ok(as(undefined)('POST', '/webhooks', { url: everything.url, eventTypes: ['device.online', 'door.opened'] }), 201);
  everything.secrets.push(distributorHook.secret);
  t.equal((await as(bob.token)('GET', `/webhooks/${created.id}`)).status, 404, "Bob does not see Alice's endpoint");
  t.same((await ok(api('GET', '/webhooks'))).items.map((e: any) => e.id), [created.id]);
  const pm = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@hooks.test', siteIds: [site.id] }), 201);
  t.equal((await as(pm.token.token)('GET', '/webhooks')).status, 403, 'a property manager has no webhooks');
  t.equal((await as(null)('GET', '/webhooks')).status, 401, 'anonymous');
  for (const url of ['http://127.0.0.2/x', 'http://10.0.0.1/x', 'http://[::1]/x', 'http://localhost/x', 'http://169.254.169.254/latest', 'ftp://example.com/x', 'http://user:pw@example.com/']) {
    t.equal((await api('POST', '/webhooks', { url })).status, 400, `refused: ${url}`);
  }
  t.equal((await ok(api('GET', '/webhooks'))).items.length, 1, 'a refused endpoint leaves no trace');
});

t.test('a test event reaches the receiver, signed; the delivery log has it', async (t) => {
  const [hook] = (await ok(api('GET', '/webhooks'))).items;
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  const [test] = await receiver.until((e) => e.some((x) => x.type === 'webhook.test'));
  t.match(test, { type: 'webhook.test', data: { endpointId: hook.id } });
  t.equal(bobs.events.size + everything.events.size, 0, 'the test event goes to that endpoint alone');
  const log = await waitFor(() => api('GET', `/webhooks/${hook.id}/deliveries`), (r) => r.body.items?.[0]?.state === 'succeeded');
  t.match(log.body.items[0], { eventId: test!.id, type: 'webhook.test', state: 'succeeded', attempts: 1, lastStatus: 200, lastResponse: 'ok' });
  t.equal(receiver.rejected, 0);
});

t.test("Alice's device and door events reach her endpoint and the distributor's, not Bob's", async (t) => {
  const door = svc.device(DOOR, { reconnect: { minMs: 50, maxMs: 200 } });
  door.start();
  await waitFor(() => door.config.get('Config.DoorSetting.RELAY.Enable1'), (v) => v === '1');
  const online = await receiver.until((e) => e.some((x) => x.type === 'device.online'));
  t.match(online.find((x) => x.type === 'device.online'), { data: { mac: DOOR, siteId: site.id } });
  t.equal((await api('POST', `/devices/${DOOR}/relays/1/open`)).status, 200);
  const got = await receiver.until((e) => e.some((x) => x.type === 'door.opened') && e.some((x) => x.type === 'job.finished' && x.data.kind === 'open-door'));
  t.match(got.find((x) => x.type === 'door.opened'), { data: { mac: DOOR, relay: 1, method: 'remote', requestedBy: { kind: 'installer', id: alice.id } } });
  t.match(got.find((x) => x.type === 'job.finished' && x.data.kind === 'open-door'), { data: { state: 'succeeded', mac: DOOR } });
  await everything.until((e) => e.some((x) => x.type === 'door.opened') && e.some((x) => x.type === 'device.online'));
  t.notOk([...everything.events.values()].some((x) => x.type === 'job.finished'), "the distributor's endpoint gets only the types it chose");
  t.equal(bobs.events.size, 0, "Bob's endpoint gets nothing of Alice's");

  // A reboot within the grace is no outage: no device.offline, no second device.online.
  const told = async () => (await svc.sql<{ type: string }>("SELECT type FROM outbound_events WHERE mac = $1 AND type LIKE 'device.%' ORDER BY id", [DOOR])).map((r) => r.type);
  t.same(await told(), ['device.online']);
  const before = Date.now();
  await door.reboot();
  await waitFor(() => svc.sql<{ n: number }>("SELECT count(*)::int AS n FROM devices WHERE mac = $1 AND status = 'online' AND last_connected_at >= $2", [DOOR, new Date(before)]), (rows) => rows[0]!.n === 1);
  await waitFor(() => svc.sql<{ n: number }>('SELECT count(*)::int AS n FROM presence_events'), (rows) => rows[0]!.n === 0);
  await presence.pass();
  const [state] = await svc.sql<{ online: boolean; offline_at: Date | null }>('SELECT online, offline_at FROM presence_state WHERE mac = $1', [DOOR]);
  t.match(state, { online: true, offline_at: null }, 'back within the grace');
  clock += 120_000;
  await presence.pass();
  t.same(await told(), ['device.online'], 'a reboot tells nothing');
  // Gone for longer than the grace: one device.offline.
  await door.stop(false);
  await waitFor(() => svc.sql<{ offline_at: Date | null }>('SELECT offline_at FROM presence_state WHERE mac = $1', [DOOR]), (rows) => rows[0]?.offline_at !== null);
  await presence.pass();
  t.same(await told(), ['device.online'], 'not within the grace');
  clock += 61_000;
  await presence.pass();
  t.same(await told(), ['device.online', 'device.offline']);
  const offline = await receiver.until((e) => e.some((x) => x.type === 'device.offline'));
  t.match(offline.find((x) => x.type === 'device.offline'), { data: { mac: DOOR, graceSeconds: 60 } });
});

t.test('retries: 500 and 429 back off (Retry-After honoured), each attempt signed anew, one event per id', async (t) => {
  const [hook] = (await ok(api('GET', '/webhooks'))).items;
  receiver.answer = (r, attempt) => (r.type !== 'webhook.test' ? { status: 200 } : attempt === 1 ? { status: 500 } : attempt === 2 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 });
  const seen: number[] = [];
  const answer = receiver.answer;
  receiver.answer = (r, attempt) => {
    if (r.type === 'webhook.test') seen.push(Date.now());
    return answer(r, attempt);
  };
  const known = new Set(receiver.events.keys());
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  const events = await receiver.until((e) => e.some((x) => x.type === 'webhook.test' && !known.has(x.id)));
  const retried = events.find((x) => x.type === 'webhook.test' && !known.has(x.id))!;
  t.equal(seen.length, 3, 'three attempts: 500, 429, 200');
  t.ok(seen[2]! - seen[1]! >= 1000, 'the attempt after Retry-After: 1 came at least a second later');
  // The receiver answered before the sender recorded the answer: the log is read once it has.
  const detail = await waitFor(() => ok(api('GET', `/webhooks/${hook.id}/deliveries?pageSize=1`)), (d) => d.items[0]?.state === 'succeeded');
  const full = await ok(api('GET', `/webhooks/${hook.id}/deliveries/${detail.items[0].id}`));
  t.same(full.log.map((a: any) => a.status), [500, 429, 200], 'the delivery log has every attempt');
  t.equal(full.eventId, retried.id);
  receiver.answer = () => ({ status: 200 });
});

t.test('rotation: the old and the new secret both verify during the overlap', async (t) => {
  const [hook] = (await ok(api('GET', '/webhooks'))).items;
  const rotated = await ok(api('POST', `/webhooks/${hook.id}/rotate-secret`, { overlapSeconds: 3600 }));
  t.not(rotated.secret, receiver.secrets[0]);
  t.ok(rotated.previousSecretUntil);
  const old = receiver.secrets[0]!;
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  const count = receiver.requests.length;
  await receiver.until(() => receiver.requests.length > count);
  const last = receiver.requests.at(-1)!;
  t.equal(last.signature.split(' ').length, 2, 'two signatures');
  receiver.secrets.splice(0, 1, rotated.secret);
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  await receiver.until(() => receiver.requests.length > count + 1);
  t.equal(receiver.rejected, 0, 'verified with the new secret alone');
  receiver.secrets.splice(0, 1, old);
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  await receiver.until(() => receiver.requests.length > count + 2);
  t.equal(receiver.rejected, 0, 'and with the old one alone');
  receiver.secrets.push(rotated.secret);
});

t.test('replay: one delivery, or all since a time, under the same webhook-id', async (t) => {
  const [hook] = (await ok(api('GET', '/webhooks'))).items;
  const [first] = (await ok(api('GET', `/webhooks/${hook.id}/deliveries?state=succeeded&pageSize=1`))).items;
  const count = receiver.requests.length;
  t.equal((await ok(api('POST', `/webhooks/${hook.id}/deliveries/${first.id}/replay`), 202)).replayed, 1);
  await receiver.until(() => receiver.requests.length > count);
  t.equal(receiver.requests.at(-1)!.id, first.eventId, 'the same id: the receiver keeps it once');
  const all = await ok(api('POST', `/webhooks/${hook.id}/replay`, { since: new Date(Date.now() - 3600_000).toISOString() }), 202);
  t.ok(all.replayed >= 5);
  t.equal((await as(bob.token)('POST', `/webhooks/${hook.id}/deliveries/${first.id}/replay`)).status, 404, "Bob cannot replay Alice's");
});

t.test('410 Gone disables the endpoint; enabling it again clears the reason', async (t) => {
  const [hook] = (await ok(api('GET', '/webhooks'))).items;
  receiver.answer = () => ({ status: 410 });
  await ok(api('POST', `/webhooks/${hook.id}/test`), 202);
  const off = await waitFor(() => api('GET', `/webhooks/${hook.id}`), (r) => r.body.enabled === false);
  t.match(off.body, { enabled: false, disabledReason: /410/ });
  receiver.answer = () => ({ status: 200 });
  t.match(await ok(api('PATCH', `/webhooks/${hook.id}`, { enabled: true })), { enabled: true, disabledReason: null });
});

t.test('the address policy: loopback, private and link-local are refused unless allowed, also behind a name', async (t) => {
  const none = new AddressPolicy([]);
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '100.64.0.1', '0.0.0.0']) t.notOk(none.allows(a), `refused: ${a}`);
  t.ok(none.allows('93.184.216.34'), 'a public address');
  t.ok(new AddressPolicy(['10.0.0.0/8']).allows('10.1.2.3'), 'an allowed network');
  const err = await new Promise<NodeJS.ErrnoException | null>((resolve) => none.lookup('localhost', {}, (e) => resolve(e)));
  t.equal(err?.code, 'EADDRNOTALLOWED', 'a name that resolves to loopback is refused on connect');
});
