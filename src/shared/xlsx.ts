import ExcelJS from 'exceljs';
import { badRequest } from './errors.js';
import type { SheetRow } from './csv.js';

/** The media type of an .xlsx workbook. */
export const XLSX_TYPE = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

/** Reads the first worksheet of an .xlsx workbook as rows of cell texts (what the spreadsheet shows). */
export async function readXlsx(body: Buffer, maxRows: number): Promise<SheetRow[]> {
  const workbook = new ExcelJS.Workbook();
  try {
    await workbook.xlsx.load(body as unknown as ArrayBuffer);
  } catch (err) {
    throw badRequest('xlsx_invalid', `the file is not a readable .xlsx workbook: ${(err as Error).message}`);
  }
  const sheet = workbook.worksheets[0];
  if (!sheet) throw badRequest('xlsx_invalid', 'the workbook has no worksheet');
  if (sheet.actualRowCount > maxRows) throw badRequest('too_many_rows', `the worksheet has more than ${maxRows - 1} rows`, { maxRows: maxRows - 1 });
  const rows: SheetRow[] = [];
  sheet.eachRow({ includeEmpty: false }, (row, line) => {
    const cells: string[] = [];
    for (let c = 1; c <= row.cellCount; c++) cells.push(row.getCell(c).text.trim());
    if (cells.some((v) => v !== '')) rows.push({ line, cells });
  });
  return rows;
}

/** Writes rows of text into a one-sheet .xlsx workbook (every cell as text, so `0C11…` and `2#12` stay as typed). */
export async function writeXlsx(sheetName: string, rows: string[][]): Promise<Buffer> {
  const workbook = new ExcelJS.Workbook();
  const sheet = workbook.addWorksheet(sheetName);
  for (const r of rows) sheet.addRow(r).eachCell((cell) => (cell.numFmt = '@'));
  return Buffer.from(await workbook.xlsx.writeBuffer());
}
