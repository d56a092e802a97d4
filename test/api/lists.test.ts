import t from 'tap';
import { startTestService } from '../helpers/service.js';

// Issue 19, "Lists an installer misses today": property managers, sub-installers, one's own tokens and a
// site's residents with search, each only for whom they belong to.

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string | null | undefined) => (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: token === undefined ? undefined : token, ...(body === undefined ? {} : { body }) });
const api = as(alice.token);
const ok = async (res: Promise<{ status: number; body: any }>, status = 200) => {
  const r = await res;
  if (r.status !== status) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
};

const site = await ok(api('POST', '/sites', { kind: 'community', name: 'Harbour', timeZone: 'Europe/Berlin' }), 201);
const second = await ok(api('POST', '/sites', { kind: 'community', name: 'Hill', timeZone: 'Europe/Berlin' }), 201);
const paula = await ok(api('POST', '/property-managers', { name: 'Paula', email: 'paula@lists.test', siteIds: [site.id] }), 201);
await ok(api('POST', '/property-managers', { name: 'Quentin', email: 'quentin@lists.test', siteIds: [site.id, second.id] }), 201);
const sam = await ok(api('POST', '/sub-installers', { name: 'Sam', email: 'sam@lists.test' }), 201);
const bobSite = await ok(as(bob.token)('POST', '/sites', { kind: 'community', name: "Bob's", timeZone: 'Europe/Berlin' }), 201);
await ok(as(bob.token)('POST', '/property-managers', { name: "Bob's PM", email: 'bobpm@lists.test', siteIds: [bobSite.id] }), 201);

t.test('property managers and sub-installers: the installer\'s own, for it and its sub-installers', async (t) => {
  const pms = await ok(api('GET', '/property-managers'));
  t.same(pms.items.map((a: any) => a.name), ['Paula', 'Quentin'], "Alice's, by name, not Bob's");
  t.same(pms.items[1].siteIds.sort(), [site.id, second.id].sort(), 'with their sites');
  t.same((await ok(api('GET', '/property-managers?search=quent'))).items.map((a: any) => a.name), ['Quentin'], 'search by name');
  t.same((await ok(api('GET', '/property-managers?search=paula@'))).items.map((a: any) => a.name), ['Paula'], 'search by email');
  t.same((await ok(as(sam.token.token)('GET', '/property-managers'))).items.map((a: any) => a.name), ['Paula', 'Quentin'], 'a sub-installer sees its installer\'s');
  t.same((await ok(as(bob.token)('GET', '/property-managers'))).items.map((a: any) => a.name), ["Bob's PM"]);
  t.same((await ok(api('GET', '/sub-installers'))).items.map((a: any) => a.name), ['Sam']);
  t.same((await ok(as(bob.token)('GET', '/sub-installers'))).items, []);
  t.equal((await as(paula.token.token)('GET', '/property-managers')).status, 403, 'a property manager lists no accounts');
  t.equal((await as(paula.token.token)('GET', '/sub-installers')).status, 403);
  t.equal((await as(null)('GET', '/property-managers')).status, 401, 'anonymous');
  t.equal((await as(undefined)('GET', '/property-managers')).status, 400, 'a distributor names the installer');
  t.same((await ok(as(undefined)('GET', `/property-managers?installerId=${bob.id}`))).items.map((a: any) => a.name), ["Bob's PM"]);
});

t.test("tokens: one's own, never a secret, the current one marked, revoked ones dated", async (t) => {
  const extra = await ok(as(undefined)('POST', `/installers/${alice.id}/tokens`), 201);
  await ok(api('DELETE', `/tokens/${extra.id}`), 204);
  const mine = await ok(api('GET', '/tokens'));
  t.equal(mine.items.length, 2);
  t.same(mine.items.map((x: any) => Object.keys(x).sort()), [['createdAt', 'current', 'id', 'revokedAt'], ['createdAt', 'current', 'id', 'revokedAt']], 'no token, no hash');
  t.notOk(JSON.stringify(mine).includes(alice.token) || JSON.stringify(mine).includes(extra.token), 'no secret anywhere');
  t.match(mine.items.find((x: any) => x.id === extra.id), { current: false, revokedAt: /T/ });
  t.match(mine.items.find((x: any) => x.id !== extra.id), { current: true, revokedAt: null });
  const paulas = await ok(as(paula.token.token)('GET', '/tokens'));
  t.same(paulas.items.map((x: any) => x.id), [paula.token.id], 'a property manager sees its own token only');
  t.equal((await ok(as(sam.token.token)('GET', '/tokens'))).items.length, 1, "a sub-installer its own, not its installer's");
  t.equal((await as(null)('GET', '/tokens')).status, 401);
});

t.test("a site's residents: by building, apartment and name; searched by name, email, phone or apartment", async (t) => {
  const a = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'A' }), 201);
  const b = await ok(api('POST', `/sites/${site.id}/buildings`, { name: 'B' }), 201);
  const a101 = await ok(api('POST', `/buildings/${a.id}/apartments`, { number: '101' }), 201);
  const b102 = await ok(api('POST', `/buildings/${b.id}/apartments`, { number: '102' }), 201);
  await ok(api('POST', `/apartments/${a101.id}/residents`, { firstName: 'Lily', lastName: 'Blue', email: 'lily@blue.test', mobile: { countryCode: '+49', number: '1705551234' } }), 201);
  await ok(api('POST', `/apartments/${a101.id}/residents`, { firstName: 'Tom', lastName: 'Blue', landlines: ['0301234567'] }), 201);
  await ok(api('POST', `/apartments/${b102.id}/residents`, { firstName: 'Ann', lastName: 'Green', email: 'ann@green.test' }), 201);
  const list = async (query = '', token = alice.token) => (await ok(as(token)('GET', `/sites/${site.id}/residents?pageSize=100${query}`))).items.map((r: any) => `${r.firstName} ${r.lastName} ${r.apartment.building}/${r.apartment.number}`);
  t.same(await list(), ['Lily Blue A/101', 'Tom Blue A/101', 'Ann Green B/102'], 'by building, apartment, name');
  t.same(await list('&search=lily'), ['Lily Blue A/101'], 'part of a first name');
  t.same(await list(`&search=${encodeURIComponent('Blue Tom')}`), ['Tom Blue A/101'], 'last name first');
  t.same(await list('&search=green.test'), ['Ann Green B/102'], 'part of an email');
  t.same(await list(`&search=${encodeURIComponent('+49 170 555')}`), ['Lily Blue A/101'], 'the digits of a mobile number');
  t.same(await list('&search=030123'), ['Tom Blue A/101'], 'a landline');
  t.same(await list('&apartment=102'), ['Ann Green B/102'], 'an apartment number');
  t.same(await list('&search=nobody'), []);
  t.same(await list('', paula.token.token), ['Lily Blue A/101', 'Tom Blue A/101', 'Ann Green B/102'], "the site's property manager");
  const otherPm = await ok(api('POST', '/property-managers', { name: 'Oscar', email: 'oscar@lists.test', siteIds: [second.id] }), 201);
  t.equal((await as(otherPm.token.token)('GET', `/sites/${site.id}/residents`)).status, 404, "another site's property manager");
  t.equal((await as(bob.token)('GET', `/sites/${site.id}/residents`)).status, 404, 'another installer');
  t.equal((await as(null)('GET', `/sites/${site.id}/residents`)).status, 401, 'anonymous');
});
