import t from 'tap';
import { startTestService } from '../helpers/service.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const count = async () => (await svc.sql('select count(*)::int as n from mac_library'))[0].n as number;

t.test('an installer adds MACs in any written form; they are stored canonical', async (t) => {
  for (const [given, stored] of <[string, string][]>[
    ['0C11050B9814', '0C11050B9814'],
    ['0c:11:05:0b:98:15', '0C11050B9815'],
    ['0C-11-05-0B-98-16', '0C11050B9816'],
  ]) {
    const res = await svc.api('POST', '/api/v1/mac-library', { token: alice.token, body: { mac: given } });
    t.equal(res.status, 201, given);
    t.match(res.body, { mac: stored, installer: { id: alice.id, name: 'Alice' }, owner: null, lastSeenAt: null });
  }
});

t.test('a bad MAC is a 400 that names the value', async (t) => {
  const before = await count();
  const res = await svc.api('POST', '/api/v1/mac-library', { token: alice.token, body: { mac: '0C:11:05:0B:98' } });
  t.equal(res.status, 400);
  t.equal(res.body.error.code, 'validation_error');
  t.match(res.body.error.message, /0C:11:05:0B:98/);
  t.equal((await svc.api('GET', '/api/v1/mac-library/not-a-mac', { token: alice.token })).status, 400);
  t.equal(await count(), before, 'nothing written');
});

t.test('a MAC registered anywhere is a 409', async (t) => {
  const res = await svc.api('POST', '/api/v1/mac-library', { token: bob.token, body: { mac: '0c11050b9814' } });
  t.equal(res.status, 409);
  t.equal(res.body.error.code, 'mac_already_registered');
});

t.test("another installer's MAC answers 404 as if it did not exist", async (t) => {
  t.equal((await svc.api('GET', '/api/v1/mac-library/0C11050B9814', { token: bob.token })).status, 404);
  t.equal((await svc.api('DELETE', '/api/v1/mac-library/0C11050B9814', { token: bob.token })).status, 404);
  const list = await svc.api('GET', '/api/v1/mac-library', { token: bob.token });
  t.equal(list.body.total, 0);
  t.equal((await svc.api('GET', '/api/v1/mac-library/0C11050B9814', { token: alice.token })).status, 200);
});

t.test('a distributor must name the installer, and sees every library', async (t) => {
  const none = await svc.api('POST', '/api/v1/mac-library', { body: { mac: 'AA0000000001' } });
  t.equal(none.status, 400);
  t.equal(none.body.error.code, 'installer_required');
  const unknown = await svc.api('POST', '/api/v1/mac-library', { body: { mac: 'AA0000000001', installerId: '00000000-0000-4000-8000-000000000000' } });
  t.equal(unknown.status, 404);
  const ok = await svc.api('POST', '/api/v1/mac-library', { body: { mac: 'AA0000000001', installerId: bob.id } });
  t.equal(ok.status, 201);
  t.equal(ok.body.installer.name, 'Bob');
  const forAlice = await svc.api('POST', '/api/v1/mac-library', { token: bob.token, body: { mac: 'AA0000000002', installerId: alice.id } });
  t.equal(forAlice.status, 403, "an installer cannot fill another's library");
  const all = await svc.api('GET', '/api/v1/mac-library?pageSize=500');
  t.equal(all.body.total, 4);
});

t.test('the MAC template imports valid rows, skips duplicates and reports invalid lines', async (t) => {
  const csv = ['\uFEFFMAC', '0C11050893CA', '0c:11:05:08:93:cb', '', '0C11050893CA', 'ZZZ', '0C11050B9814', 'AA0000000001', '0C-11-05-08-93-CC', ''].join('\r\n');
  const res = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: csv });
  t.equal(res.status, 200);
  t.same(res.body.added, 3);
  t.same(res.body.skipped, 3, 'one duplicate in the file, one already Alice’s, one Bob’s');
  t.same(res.body.invalid, [{ line: 6, value: 'ZZZ', reason: res.body.invalid[0]?.reason }]);
  const mine = await svc.api('GET', '/api/v1/mac-library?search=0C1105089&pageSize=50', { token: alice.token });
  t.same(mine.body.items.map((i: any) => i.mac).sort(), ['0C11050893CA', '0C11050893CB', '0C11050893CC']);
});

t.test("a malformed or oversized MAC file gets a stable code in this service's words, writing nothing", async (t) => {
  const before = await count();
  const unclosed = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: 'MAC\n"0C11050893CA\n' });
  t.equal(unclosed.status, 400);
  t.same(unclosed.body.error, { code: 'csv_invalid', message: 'the CSV file cannot be read: a quoted cell is not closed (line 2)', details: { line: 2 } });
  // A million empty cells in one row (2 MB): counted while parsing, refused at SPREADSHEET_MAX_CELLS.
  const wide = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: `MAC\n${','.repeat(1_000_000)}\n` });
  t.equal(wide.status, 413);
  t.match(wide.body.error, { code: 'spreadsheet_too_large', message: /at most 1000000 are read \(SPREADSHEET_MAX_CELLS\)/, details: { limit: 1_000_000, unit: 'cells' } });
  t.equal(await count(), before, 'nothing written');
});

t.test('imports refuse wrong content types, bodies too large and too many rows, writing nothing', async (t) => {
  const before = await count();
  const json = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, body: { mac: 'BA0000000001' } });
  t.equal(json.status, 415);
  t.equal(json.body.error.code, 'unsupported_media_type');

  const rows = ['MAC'];
  for (let i = 0; i < 50_001; i++) rows.push(`BA${i.toString(16).toUpperCase().padStart(10, '0')}`);
  const tooMany = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: rows.join('\n') });
  t.equal(tooMany.status, 400);
  t.equal(tooMany.body.error.code, 'too_many_rows');

  const huge = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: 'MAC\n' + 'x'.repeat(5 * 1024 * 1024) });
  t.equal(huge.status, 413);
  t.equal(huge.body.error.code, 'payload_too_large');

  const noHeader = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: 'Serial\nABC' });
  t.equal(noHeader.status, 400);
  t.equal(noHeader.body.error.code, 'csv_header_missing');
  t.equal(await count(), before, 'nothing written');
});

t.test('a full 50,000-row import is written whole', async (t) => {
  const rows = ['MAC'];
  for (let i = 0; i < 50_000; i++) rows.push(`CC${i.toString(16).toUpperCase().padStart(10, '0')}`);
  const res = await svc.api('POST', '/api/v1/mac-library/import', { token: bob.token, raw: rows.join('\n') });
  t.equal(res.status, 200);
  t.same(res.body, { added: 50_000, skipped: 0, invalid: [] });
  const page = await svc.api('GET', '/api/v1/mac-library?search=CC&pageSize=500&page=3', { token: bob.token });
  t.equal(page.body.total, 50_000);
  t.equal(page.body.items.length, 500);
  t.equal(page.body.page, 3);
});

t.test('list filters by bound state; owner is the bound device name', async (t) => {
  const dev = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: '0C11050B9815', name: 'Front gate', type: 0 } });
  t.equal(dev.status, 201);
  const bound = await svc.api('GET', '/api/v1/mac-library?bound=true', { token: alice.token });
  t.equal(bound.body.total, 1);
  t.match(bound.body.items[0], { mac: '0C11050B9815', owner: 'Front gate' });
  const unbound = await svc.api('GET', '/api/v1/mac-library?bound=false&pageSize=500', { token: alice.token });
  t.notOk(unbound.body.items.some((i: any) => i.mac === '0C11050B9815'));
  const byOwner = await svc.api('GET', '/api/v1/mac-library?search=front', { token: alice.token });
  t.equal(byOwner.body.total, 1);
  t.equal((await svc.api('GET', '/api/v1/mac-library?bound=maybe', { token: alice.token })).status, 400);
  t.equal((await svc.api('GET', '/api/v1/mac-library?pageSize=0', { token: alice.token })).status, 400);
  t.equal((await svc.api('GET', '/api/v1/mac-library', { token: alice.token })).body.pageSize, 10, 'page size defaults to 10');
});

t.test('a MAC is removed with 204, but not while a device is bound to it', async (t) => {
  const bound = await svc.api('DELETE', '/api/v1/mac-library/0C11050B9815', { token: alice.token });
  t.equal(bound.status, 409);
  t.equal(bound.body.error.code, 'mac_bound');
  const free = await svc.api('DELETE', '/api/v1/mac-library/0c:11:05:0b:98:16', { token: alice.token });
  t.equal(free.status, 204);
  t.equal((await svc.api('GET', '/api/v1/mac-library/0C11050B9816', { token: alice.token })).status, 404);
});

t.test('MACs no device can have are refused, one by one and in the template', async (t) => {
  for (const mac of ['000000000000', 'FF:FF:FF:FF:FF:FF', '01-00-5E-00-00-FB', '333300000001']) {
    const res = await svc.api('POST', '/api/v1/mac-library', { token: alice.token, body: { mac } });
    t.equal(res.status, 400, mac);
    t.match(res.body.error.message, /all-zero|broadcast|multicast/);
  }
  const imported = await svc.api('POST', '/api/v1/mac-library/import', { token: alice.token, raw: 'MAC\n000000000000\nFFFFFFFFFFFF\n01005E0000FB\n' });
  t.equal(imported.status, 200);
  t.equal(imported.body.added, 0);
  t.same(imported.body.invalid.map((r: any) => r.line), [2, 3, 4]);
  t.equal((await svc.sql("select count(*)::int as n from mac_library where mac in ('000000000000','FFFFFFFFFFFF','01005E0000FB','333300000001')"))[0].n, 0);
});

t.test('an impossible MAC is refused when registered, but naming one in a URL is a plain lookup', async (t) => {
  t.equal((await svc.api('GET', '/api/v1/mac-library/01005E0000FB', { token: alice.token })).status, 404);
  t.equal((await svc.api('GET', '/api/v1/devices/01005E0000FB', { token: alice.token })).status, 404);
  t.equal((await svc.api('GET', '/api/v1/mac-library/not-a-mac', { token: alice.token })).status, 400);
});
