import t from 'tap';
import { normalizeMac, parseMac } from '../../src/mac-library/mac.js';
import { MAX_IMPORT_ROWS, parseMacCsv } from '../../src/mac-library/csv.js';
import { readCsv } from '../../src/shared/csv.js';

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

t.test('MACs no device can have are refused with the reason', async (t) => {
  t.match(parseMac('000000000000'), { reason: /all-zero/ });
  t.match(parseMac('ff:ff:ff:ff:ff:ff'), { reason: /broadcast/ });
  t.match(parseMac('01-00-5E-00-00-01'), { reason: /multicast/ }, 'IPv4 multicast');
  t.match(parseMac('3333000000FB'), { reason: /multicast/ }, 'IPv6 multicast');
  t.same(parseMac('020000000001'), { mac: '020000000001' }, 'a locally administered unicast MAC is fine');
  const parsed = parseMacCsv('MAC\n0C11050893CA\n000000000000\nFFFFFFFFFFFF\n0D11050893CA');
  t.same(parsed.rows.map((r) => r.mac), ['0C11050893CA']);
  t.same(parsed.invalid.map((r) => [r.line, r.reason.split(' ')[1]]), [[3, 'all-zero'], [4, 'broadcast'], [5, 'multicast']]);
  t.same(parseMacCsv('0D11050893CA\n0C11050893CA').rows.map((r) => r.mac), ['0C11050893CA'], 'a headerless file starting with a refused MAC is still data');
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

t.test('one separator per file: a comma inside a semicolon-separated file is text', async (t) => {
  // The hand-written splitter this replaced cut "Gate, North" in two and read the name as the MAC.
  const parsed = parseMacCsv('Name;MAC\nGate, North;0C11050893CA\n"Lobby; West";0C11050893CB\n');
  t.same(parsed.rows.map((r) => r.mac), ['0C11050893CA', '0C11050893CB']);
  t.same(parsed.invalid, []);
  t.throws(() => parseMacCsv('MAC\n"0C11050893CA\n'), { code: 'csv_invalid', kind: 'invalid' }, 'an unclosed quote is a clear error');
});

t.test('a file without header starting with a MAC is accepted; garbage header is not', async (t) => {
  t.same(parseMacCsv('0C11050893CA\n0C11050893CB').rows.map((r) => r.mac), ['0C11050893CA', '0C11050893CB']);
  t.throws(() => parseMacCsv('hello,world\n0C11050893CA'), { code: 'csv_header_missing', kind: 'invalid' });
  t.throws(() => parseMacCsv('\r\n\r\n'), { code: 'csv_empty' });
});

t.test('more rows than the import limit are refused as a whole', async (t) => {
  const lines = ['MAC'];
  for (let i = 0; i <= MAX_IMPORT_ROWS; i++) lines.push(`0C${i.toString(16).padStart(10, '0')}`);
  t.throws(() => parseMacCsv(lines.join('\n')), { code: 'too_many_rows', kind: 'invalid' });
  t.equal(parseMacCsv(lines.slice(0, -1).join('\n')).rows.length, MAX_IMPORT_ROWS);
});

t.test('rows read elsewhere (the API reads the file in a worker) parse the same as the text', async (t) => {
  const text = 'MAC;Name\n0C11050893CA;Gate\n"0C11050893CB";Hall\n';
  const rows = readCsv(text, MAX_IMPORT_ROWS + 1);
  t.same(parseMacCsv(rows), parseMacCsv(text));
  t.throws(() => readCsv(`MAC\n${'0C11050893CA\n'.repeat(10)}`, MAX_IMPORT_ROWS + 1, 5), { code: 'spreadsheet_too_large', kind: 'too_large', details: { limit: 5 } });
});
