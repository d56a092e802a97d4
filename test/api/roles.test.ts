import t from 'tap';
import { startTestService, waitFor } from '../helpers/service.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const call = (token: string, method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token, body });
const A = (method: string, path: string, body?: unknown) => call(alice.token, method, path, body);

const s1 = (await A('POST', '/sites', { kind: 'community', name: 'Seaside', timeZone: 'UTC' })).body;
const s2 = (await A('POST', '/sites', { kind: 'community', name: 'Hillside', timeZone: 'UTC' })).body;
const bobSite = (await call(bob.token, 'POST', '/sites', { kind: 'community', name: 'Bob site', timeZone: 'UTC' })).body;
const b1 = (await A('POST', `/sites/${s1.id}/buildings`, { name: 'A' })).body;
const a1 = (await A('POST', `/buildings/${b1.id}/apartments`, { number: '101' })).body;
const b2 = (await A('POST', `/sites/${s2.id}/buildings`, { name: 'A' })).body;
const a2 = (await A('POST', `/buildings/${b2.id}/apartments`, { number: '201' })).body;
await svc.addDevice(alice.token, '0C1113000001', { type: 0 });
await svc.addDevice(alice.token, '0C1113000002', { type: 0 });
await A('PATCH', '/devices/0C1113000001', { siteId: s1.id });
await A('PATCH', '/devices/0C1113000002', { siteId: s2.id });

t.test('a property manager manages residents and their access in its sites, and nothing else', async (t) => {
  const refused = await A('POST', '/property-managers', { name: 'PM', email: 'pm-bad@example.test', siteIds: [bobSite.id] });
  t.equal(refused.status, 400, "an installer cannot give away another installer's site");
  t.equal(refused.body.error.code, 'site_not_found');

  const made = await A('POST', '/property-managers', { name: 'Paula', email: 'paula@example.test', siteIds: [s1.id] });
  t.equal(made.status, 201);
  t.match(made.body, { account: { role: 'property-manager', parentId: alice.id }, siteIds: [s1.id] });
  const pm = made.body.token.token as string;
  const P = (method: string, path: string, body?: unknown) => call(pm, method, path, body);

  t.same((await P('GET', '/sites')).body.items.map((s: any) => s.id), [s1.id], 'it sees its sites only');
  t.equal((await P('GET', `/sites/${s2.id}`)).status, 404);
  t.equal((await P('GET', `/apartments/${a2.id}`)).status, 404, "another site's apartments are not there for it");
  t.equal((await P('POST', `/apartments/${a2.id}/residents`, { firstName: 'X', lastName: 'Y' })).status, 404);

  const resident = await P('POST', `/apartments/${a1.id}/residents`, { firstName: 'Lily', lastName: 'Green' });
  t.equal(resident.status, 201, 'it adds residents');
  const pin = await P('POST', `/residents/${resident.body.id}/credentials`, { kind: 'pin', value: '4321' });
  t.equal(pin.status, 201, 'and their PINs');
  t.equal((await P('DELETE', `/credentials/${pin.body.id}`)).status, 204, 'and revokes them');
  t.equal((await P('POST', `/apartments/${a1.id}/reset`)).status, 200, 'and resets apartments');

  t.same((await P('GET', '/devices')).body.items.map((d: any) => d.mac), ['0C1113000001'], 'it reads the devices of its sites only');
  t.equal((await P('GET', '/devices/0C1113000002')).status, 404);
  const jobs = (await P('GET', '/jobs?pageSize=100')).body.items;
  t.ok(jobs.length > 0 && jobs.every((j: any) => j.mac === '0C1113000001'), 'and their jobs only');

  for (const [method, path, body] of [
    ['POST', '/devices', { mac: '0C1113000009', name: 'X', type: 0 }],
    ['PATCH', '/devices/0C1113000001', { name: 'Renamed' }],
    ['DELETE', '/devices/0C1113000001'],
    ['POST', '/mac-library', { mac: '0C1113000009' }],
    ['GET', '/mac-library'],
    ['GET', '/firmware'],
    ['POST', '/devices/0C1113000001/reboot'],
    ['POST', '/sites', { kind: 'community', name: 'Mine', timeZone: 'UTC' }],
    ['POST', `/sites/${s1.id}/buildings`, { name: 'B' }],
    ['DELETE', `/apartments/${a1.id}`],
    ['POST', '/property-managers', { name: 'Q', email: 'q@example.test', siteIds: [s1.id] }],
  ] as [string, string, unknown?][]) {
    const res = await P(method, path, body);
    t.equal(res.status, 403, `${method} ${path} is refused`);
  }
  t.equal((await A('GET', '/devices/0C1113000001')).body.name, 'Gate 0001', 'nothing was changed');

  // Its writes are in the site's audit log under its own account.
  const audit = (await A('GET', `/sites/${s1.id}/audit?pageSize=50`)).body.items;
  const mine = audit.filter((e: any) => e.accountId === made.body.account.id).map((e: any) => e.action);
  t.same(mine, ['apartment.reset', 'credential.revoked', 'credential.created', 'resident.created']);
  t.ok(audit.some((e: any) => e.action === 'building.created' && e.accountId === alice.id), "the installer's writes carry the installer's account");

  const pmWrites = (await P('GET', '/audit/writes?pageSize=100')).body.items;
  t.ok(pmWrites.length > 0 && pmWrites.every((w: any) => w.siteId === s1.id), 'a property manager reads the writes in its sites only');

  // The installer gives it another site.
  const moved = await A('PUT', `/property-managers/${made.body.account.id}/sites`, { siteIds: [s2.id] });
  t.same(moved.body.siteIds, [s2.id]);
  t.same((await P('GET', '/sites')).body.items.map((s: any) => s.id), [s2.id]);
  t.equal((await call(bob.token, 'PUT', `/property-managers/${made.body.account.id}/sites`, { siteIds: [bobSite.id] })).status, 404, "Bob cannot touch Alice's property manager");
});

t.test('a sub-installer works as its installer, but makes no accounts', async (t) => {
  const made = await A('POST', '/sub-installers', { name: 'Sam', email: 'sam@example.test' });
  t.equal(made.status, 201);
  t.match(made.body.account, { role: 'sub-installer', parentId: alice.id });
  const sub = made.body.token.token as string;
  const S = (method: string, path: string, body?: unknown) => call(sub, method, path, body);
  t.same((await S('GET', '/sites')).body.items.map((s: any) => s.name).sort(), ['Hillside', 'Seaside']);
  const lib = await S('POST', '/mac-library', { mac: '0C1113000010' });
  t.equal(lib.status, 201, "it adds MACs to its installer's library");
  const dev = await S('POST', '/devices', { mac: '0C1113000010', name: 'Side gate', type: 0 });
  t.equal(dev.status, 201);
  t.equal(dev.body.installerId, alice.id, 'the device is the installer’s');
  const placed = await S('PATCH', '/devices/0C1113000010', { siteId: s1.id });
  t.equal(placed.status, 200);
  t.equal((await S('GET', `/sites/${bobSite.id}`)).status, 404, "it does not reach other installers' sites");
  t.equal((await S('POST', '/sub-installers', { name: 'T', email: 't@example.test' })).status, 403, 'it makes no accounts');
  t.equal((await S('POST', '/property-managers', { name: 'T', email: 't2@example.test', siteIds: [s1.id] })).status, 403);
  t.equal((await S('GET', '/me')).body.id, made.body.account.id, '/me is the sub-installer itself');
  await svc.service.follower.settled();
  const audit = (await A('GET', `/sites/${s1.id}/audit?pageSize=50`)).body.items;
  t.ok(audit.some((e: any) => e.action === 'device.placed' && e.subject === '0C1113000010' && e.accountId === made.body.account.id), 'its placement is audited under its own account');
  const writes = (await A('GET', '/audit/writes?pageSize=100')).body.items;
  const bySam = writes.filter((w: any) => w.accountId === made.body.account.id).map((w: any) => [w.action, w.subject]);
  t.same(bySam.slice(-2), [
    ['device.created', '0C1113000010'],
    ['mac.added', '0C1113000010'],
  ], "(newest first) the sub-installer's MAC and device writes are in the write audit under its account");
  t.ok(writes.every((w: any) => w.installerId === alice.id), "Alice reads the writes to her data only");
  t.notOk((await call(bob.token, 'GET', '/audit/writes?pageSize=100')).body.items.some((w: any) => w.installerId === alice.id), "Bob reads none of Alice's");
  const job = (await S('POST', '/devices/0C1113000010/reboot')).body.job;
  const audited = await waitFor(() => A('GET', `/audit?jobId=${job.id}`).then((r) => r.body.items), (items: any[]) => items.length > 0);
  t.equal(audited[0].actor, `account:${made.body.account.id}`, 'and so is its remote maintenance');
});
