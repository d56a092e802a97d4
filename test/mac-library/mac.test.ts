import t from 'tap';
import { normalizeMac } from '../../src/mac-library/mac.js';
import { MAX_IMPORT_ROWS, parseMacCsv } from '../../src/mac-library/csv.js';

t.test('MACs are accepted in the three written forms and normalised', async (t) => {
  t.equal(normalizeMac('0C11050B9814'), '0C11050B9814');
  t.equal(normalizeMac('0c:11:05:0b:98:14'), '0C11050B9814');
  t.equal(normalizeMac('0C-11-05-0B-98-14'), '0C11050B9814');
  t.equal(normalizeMac(' 0c11050b9814 '), '0C11050B9814');
});

t.test('anything else is refused', async (t) => {
  for (const bad of ['', '0C11050B981', '0C11050B98145', '0C:11:05-0B:98:14', '0C11.050B.9814', 'GG11050B9814', '0C:11:05:0B:98', '0C110 50B9814']) {
    t.equal(normalizeMac(bad), null, `refuses ${JSON.stringify(bad)}`);
  }
});

t.test('the MAC template parses with BOM, CRLF, blank lines, quotes and other columns', async (t) => {
  const csv = '\uFEFFName,MAC\r\nGate,"0c:11:05:08:93:ca"\r\n\r\nLobby,0C11050893CB\r\nBad,nonsense\r\nEmpty,\r\n';
  const parsed = parseMacCsv(csv);
  t.same(parsed.rows, [
    { line: 2, mac: '0C11050893CA' },
    { line: 4, mac: '0C11050893CB' },
  ]);
  t.equal(parsed.invalid.length, 2);
  t.match(parsed.invalid[0], { line: 5, value: 'nonsense' });
  t.match(parsed.invalid[1], { line: 6, value: '', reason: /empty/ });
});

t.test('a file without header starting with a MAC is accepted; garbage header is not', async (t) => {
  t.same(parseMacCsv('0C11050893CA\n0C11050893CB').rows.map((r) => r.mac), ['0C11050893CA', '0C11050893CB']);
  t.throws(() => parseMacCsv('hello,world\n0C11050893CA'), { code: 'csv_header_missing', status: 400 });
  t.throws(() => parseMacCsv('\r\n\r\n'), { code: 'csv_empty' });
});

t.test('more rows than the import limit are refused as a whole', async (t) => {
  const lines = ['MAC'];
  for (let i = 0; i <= MAX_IMPORT_ROWS; i++) lines.push(i.toString(16).padStart(12, '0'));
  t.throws(() => parseMacCsv(lines.join('\n')), { code: 'too_many_rows', status: 400 });
  t.equal(parseMacCsv(lines.slice(0, -1).join('\n')).rows.length, MAX_IMPORT_ROWS);
});
