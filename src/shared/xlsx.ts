import { badRequest, DomainError } from './errors.js';
import { tooManyCells, type SheetRow } from './csv.js';
import { escapeFormula, unescapeFormula } from './text.js';
import { inflateEntries, readZipDirectory, type ZipLimits } from './zip.js';

// exceljs loads on first use: a reading worker refuses a hostile archive before it has paid for the library.
const excel = async () => (await import('exceljs')).default;

/** The media type of an .xlsx workbook. */
export const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

export interface XlsxLimits extends ZipLimits {
  /** Cells in all worksheets together (counted in the XML before the workbook is parsed). */
  maxCells: number;
}

const WORKSHEET = /^xl\/worksheets\/[^/]+\.xml$/;
const CELL_OPEN = Buffer.from('<c');

/** Counts `<c ` / `<c>` / `<c/>` tags across chunk boundaries. */
function cellCounter() {
  let tail: Buffer = Buffer.alloc(0);
  let cells = 0;
  return {
    add(chunk: Buffer) {
      const text = tail.length ? Buffer.concat([tail, chunk]) : chunk;
      for (let i = text.indexOf(CELL_OPEN); i >= 0 && i + 2 < text.length; i = text.indexOf(CELL_OPEN, i + 2)) {
        const next = text[i + 2];
        if (next === 0x20 || next === 0x3e || next === 0x2f) cells++;
      }
      tail = text.subarray(Math.max(0, text.length - 2));
      return cells;
    },
  };
}

/** The library's own error rides along as `cause` (logged by the caller, never answered). */
const withCause = (err: DomainError, cause: unknown) => Object.assign(err, { cause });

/**
 * Reads the first worksheet of an .xlsx workbook as rows of cell texts (what the spreadsheet shows).
 * The archive is measured first (zip.ts) and its cells counted, so the library only ever parses a
 * workbook within the limits; whatever the library throws becomes `xlsx_invalid` without its text.
 */
export async function readXlsx(body: Buffer, maxRows: number, limits: XlsxLimits): Promise<SheetRow[]> {
  const entries = readZipDirectory(body, limits);
  const counter = cellCounter();
  await inflateEntries(body, entries, limits, (entry, chunk) => {
    if (!WORKSHEET.test(entry.name)) return;
    const found = counter.add(chunk);
    if (found > limits.maxCells) throw tooManyCells(limits.maxCells);
  });

  const workbook = new (await excel()).Workbook();
  try {
    await workbook.xlsx.load(body as unknown as ArrayBuffer);
  } catch (err) {
    throw withCause(badRequest('xlsx_invalid', 'the file is not a readable .xlsx workbook (open it in a spreadsheet program and save it again as .xlsx)'), err);
  }
  try {
    const sheet = workbook.worksheets[0];
    if (!sheet) throw badRequest('xlsx_invalid', 'the workbook has no worksheet');
    if (sheet.actualRowCount > maxRows) throw badRequest('too_many_rows', `the worksheet has more than ${maxRows - 1} rows`, { maxRows: maxRows - 1 });
    const rows: SheetRow[] = [];
    let cellsRead = 0;
    sheet.eachRow({ includeEmpty: false }, (row, line) => {
      // A row's width is its last cell's column: one cell in column XFD would otherwise read 16,384.
      cellsRead += row.cellCount;
      if (cellsRead > limits.maxCells) throw tooManyCells(limits.maxCells);
      const cells: string[] = [];
      for (let c = 1; c <= row.cellCount; c++) cells.push(unescapeFormula(row.getCell(c).text.trim()));
      if (cells.some((v) => v !== '')) rows.push({ line, cells });
    });
    return rows;
  } catch (err) {
    if (err instanceof DomainError) throw err;
    throw withCause(badRequest('xlsx_invalid', 'the worksheet holds cells this service cannot read (open it in a spreadsheet program and save it again as .xlsx)'), err);
  }
}

/**
 * Writes rows of text into a one-sheet .xlsx workbook (every cell as text, so `0C11…` and `2#12` stay as
 * typed); a formula-like cell gets a leading `'`, as in the CSV, so editing it never makes a formula.
 */
export async function writeXlsx(sheetName: string, rows: string[][]): Promise<Buffer> {
  const workbook = new (await excel()).Workbook();
  const sheet = workbook.addWorksheet(sheetName);
  for (const r of rows) sheet.addRow(r.map(escapeFormula)).eachCell((cell) => (cell.numFmt = '@'));
  return Buffer.from(await workbook.xlsx.writeBuffer());
}
