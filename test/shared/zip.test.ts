import t from 'tap';
import { writeXlsx } from '../../src/shared/xlsx.js';
import { inflateEntries, readZipDirectory } from '../../src/shared/zip.js';
import { repeatedPart, withSheet } from '../helpers/zip.js';

// The zip reader measures an .xlsx before any spreadsheet library sees it.

const limits = { maxUnzippedBytes: 48 * 1024 * 1024, maxPartBytes: 32 * 1024 * 1024, maxEntries: 1000 };
const ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>x</t></is></c></row>';
const workbook = await writeXlsx('Residents', [['Building', 'Apt']]);

t.test('a workbook whose sheet1.xml unzips to 149 MB is refused from its directory, naming the limit and the size', async (t) => {
  const sheet = repeatedPart('sheet', ROW, 149 * 1024 * 1024);
  const bomb = withSheet(workbook, sheet);
  t.ok(bomb.length < 1024 * 1024, `the bomb is small (${bomb.length} bytes)`);
  t.throws(() => readZipDirectory(bomb, limits), {
    kind: 'too_large',
    code: 'spreadsheet_too_large',
    message: /xl\/worksheets\/sheet1\.xml unzips to 149\.\d MiB; at most 32\.0 MiB per part/,
    details: { limit: limits.maxPartBytes, found: sheet.size, part: 'xl/worksheets/sheet1.xml' },
  });
});

t.test('parts that are each within the limit but together are not are refused', async (t) => {
  const half = withSheet(workbook, repeatedPart('sheet', ROW, 20 * 1024 * 1024));
  t.throws(() => readZipDirectory(half, { ...limits, maxUnzippedBytes: 10 * 1024 * 1024 }), { code: 'spreadsheet_too_large', message: /the workbook unzips to .*at most 10\.0 MiB/ });
});

t.test('a header that understates a part is caught while inflating, after at most what it declared', async (t) => {
  const liar = withSheet(workbook, repeatedPart('sheet', ROW, 149 * 1024 * 1024, 4096));
  const entries = readZipDirectory(liar, limits);
  t.equal(entries.find((e) => e.name === 'xl/worksheets/sheet1.xml')?.size, 4096, 'the directory believes 4 KiB');
  let seen = 0;
  await t.rejects(
    inflateEntries(liar, entries, limits, (e, chunk) => {
      if (e.name === 'xl/worksheets/sheet1.xml') seen += chunk.length;
    }),
    { code: 'xlsx_invalid', message: /sheet1\.xml unzips to more than its header declares/ },
  );
  t.equal(seen, 0, 'no byte past the declared size reached the reader');

  // A header that declares the limit itself is held to the limit.
  const near = withSheet(workbook, repeatedPart('sheet', ROW, 149 * 1024 * 1024, limits.maxPartBytes));
  await t.rejects(inflateEntries(near, readZipDirectory(near, limits), limits, () => {}), { code: 'xlsx_invalid' });
});

t.test('what is not a zip, or a damaged one, is xlsx_invalid in this service\'s words', async (t) => {
  t.throws(() => readZipDirectory(Buffer.from('PK not a zip at all, really not'), limits), { code: 'xlsx_invalid', message: 'the file is not a readable .xlsx workbook (no zip directory)' });
  const damaged = Buffer.from(workbook);
  damaged.fill(0x41, 40, 400);
  await t.rejects(inflateEntries(damaged, readZipDirectory(damaged, limits), limits, () => {}), { code: 'xlsx_invalid', message: /^the file is not a readable \.xlsx workbook \(/ });
  t.throws(() => readZipDirectory(workbook, { ...limits, maxEntries: 3 }), { code: 'spreadsheet_too_large', details: { unit: 'parts' } });
});
