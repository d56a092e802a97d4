import t from 'tap';
import { DEFAULT_SPREADSHEET_LIMITS, SpreadsheetReader } from '../../src/shared/sheets.js';
import { writeXlsx } from '../../src/shared/xlsx.js';
import { part, repeatedPart, withSheet } from '../helpers/zip.js';

// Files are read in worker threads; every refusal carries a stable code and this service's words.

const heard: string[] = [];
const reader = new SpreadsheetReader(DEFAULT_SPREADSHEET_LIMITS, (text) => heard.push(text));
t.teardown(() => reader.close());
const workbook = await writeXlsx('Residents', [['Building', 'Apt']]);
const sheetXml = (rows: string) => `<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>${rows}</sheetData></worksheet>`;

t.test('a CSV file and a workbook are read in a worker, formula escapes taken off', async (t) => {
  t.same(await reader.read('csv', "Building,Apt\nTower,'+49\n", 10), [
    { line: 1, cells: ['Building', 'Apt'] },
    { line: 2, cells: ['Tower', '+49'] },
  ]);
  t.same(await reader.read('xlsx', await writeXlsx('S', [['=1+1', 'x']]), 10), [{ line: 1, cells: ['=1+1', 'x'] }], "the workbook's `'=1+1` reads as =1+1");
});

t.test('the 149 MB bomb is refused with spreadsheet_too_large, honest header or lying one', async (t) => {
  const ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row>';
  await t.rejects(reader.read('xlsx', withSheet(workbook, repeatedPart('s', ROW, 149 * 1024 * 1024)), 10), { code: 'spreadsheet_too_large', details: { limit: DEFAULT_SPREADSHEET_LIMITS.maxPartBytes } });
  await t.rejects(reader.read('xlsx', withSheet(workbook, repeatedPart('s', ROW, 149 * 1024 * 1024, 2000)), 10), { code: 'xlsx_invalid', message: /unzips to more than its header declares/ });
  // Whitespace compresses best of all: 150 KB of it is 150 MB unzipped.
  const blank = withSheet(workbook, repeatedPart('s', ' ', 150 * 1024 * 1024));
  t.ok(blank.length < 200 * 1024);
  await t.rejects(reader.read('xlsx', blank, 10), { code: 'spreadsheet_too_large' });
});

t.test('cells are counted before the workbook is parsed, and while a CSV file is', async (t) => {
  const small = new SpreadsheetReader({ ...DEFAULT_SPREADSHEET_LIMITS, maxCells: 100 });
  t.teardown(() => small.close());
  const cells = Array.from({ length: 101 }, (_, i) => `<c r="A${i + 1}" t="inlineStr"><is><t>x</t></is></c>`).join('');
  await t.rejects(small.read('xlsx', withSheet(workbook, part('s', sheetXml(`<row r="1">${cells}</row>`))), 1000), { code: 'spreadsheet_too_large', details: { limit: 100, unit: 'cells' } });
  // One cell far right makes a row as wide as its column: counted as such.
  await t.rejects(small.read('xlsx', withSheet(workbook, part('s', sheetXml('<row r="1"><c r="ZZ1" t="inlineStr"><is><t>x</t></is></c></row>'))), 1000), { code: 'spreadsheet_too_large' });
  await t.rejects(small.read('csv', `${'a,'.repeat(60)}\n${'b,'.repeat(60)}\n`, 1000), { code: 'spreadsheet_too_large', message: /more than 100 cells; at most 100 are read/ });
});

t.test("what the parser throws never reaches the caller: a stable code and this service's words", async (t) => {
  // exceljs's own answer to a cell without a reference is "Cannot read properties of undefined (reading 'col')".
  const noRef = withSheet(workbook, part('s', sheetXml('<row r="1"><c t="inlineStr"><is><t>x</t></is></c></row>')));
  const err = await reader.read('xlsx', noRef, 10).catch((e) => e);
  t.match(err, { code: 'xlsx_invalid', kind: 'invalid' });
  t.notMatch(err.message, /Cannot read|undefined|col'/);
  t.match(heard.at(-1), /reading 'col'/, `the library text is logged, not answered (${JSON.stringify(heard)})`);
  for (const xml of ['garbage <<<', sheetXml('<row r="1"><c r="!!" t="inlineStr"><is><t>x</t></is></c></row>')]) {
    const e = await reader.read('xlsx', withSheet(workbook, part('s', xml)), 10).catch((x) => x);
    t.match(e, { code: 'xlsx_invalid' });
    t.notMatch(e.message, /disallowed|needs a Row/);
  }
  const csv = await reader.read('csv', 'a,b\n"x,1', 10).catch((e) => e);
  t.match(csv, { code: 'csv_invalid', message: 'the CSV file cannot be read: a quoted cell is not closed (line 2)', details: { line: 2 } });
  t.notMatch(csv.message, /Quote Not Closed|position/);
});

t.test('a worker past its heap limit or its deadline fails its own file with spreadsheet_too_large', async (t) => {
  const rows = Array.from({ length: 3000 }, (_, i) => ['Tower', String(i), `First${i}`, `Last${i}`, `p${i}@example.com`]);
  const big = await writeXlsx('Residents', rows);
  const tight = new SpreadsheetReader({ ...DEFAULT_SPREADSHEET_LIMITS, workerMemoryMb: 8 });
  t.teardown(() => tight.close());
  await t.rejects(tight.read('xlsx', big, 10_000), { code: 'spreadsheet_too_large', message: /needs more than 8 MiB \(SPREADSHEET_WORKER_MEMORY_MB\)/ });
  // No worker answers within a millisecond of being asked: the deadline ends it.
  const hasty = new SpreadsheetReader({ ...DEFAULT_SPREADSHEET_LIMITS, deadlineMs: 1 });
  t.teardown(() => hasty.close());
  await t.rejects(hasty.read('xlsx', big, 10_000), { code: 'spreadsheet_too_large', message: /longer than 0\.001 s/ });
  t.equal((await reader.read('xlsx', big, 10_000)).length, 3000, 'the same file within the default limits reads');
});

t.test('files beyond the workers wait their turn; beyond the queue, spreadsheet_busy', async (t) => {
  const one = new SpreadsheetReader({ ...DEFAULT_SPREADSHEET_LIMITS, workers: 1 });
  t.teardown(() => one.close());
  const reads = Array.from({ length: 10 }, (_, i) => one.read('csv', `MAC\n0C11050000${String(i).padStart(2, '0')}\n`, 10).then(
    (rows) => rows[1]!.cells[0],
    (e) => e.code,
  ));
  const results = await Promise.all(reads);
  t.same(results.slice(0, 9), ['0C1105000000', '0C1105000001', '0C1105000002', '0C1105000003', '0C1105000004', '0C1105000005', '0C1105000006', '0C1105000007', '0C1105000008'], 'one running, eight waiting: all read');
  t.equal(results[9], 'spreadsheet_busy');
});
