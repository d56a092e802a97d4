import { readCsv, type SheetRow } from '../shared/csv.js';
import { badRequest } from '../shared/errors.js';
import { NOT_A_MAC, parseMac } from './mac.js';

/** Written like a MAC, valid or not (a headerless file's first row). */
const looksLikeMac = (value: string) => (parseMac(value) as { reason?: string }).reason !== NOT_A_MAC;

export const MAX_IMPORT_ROWS = 50_000;

export interface ParsedMacCsv {
  /** Valid, normalised MACs with the line they came from, in file order (duplicates included). */
  rows: { line: number; mac: string }[];
  invalid: { line: number; value: string; reason: string }[];
}

/**
 * Parses the MAC template: a `MAC` header column (any case, other columns ignored), one MAC per row.
 * A file without a header whose first row is a MAC is accepted too. The file is read by the kept CSV
 * parser: one separator per file (`,` or `;`), quoted cells, BOM, CRLF and blank lines; the API reads
 * it in a worker thread (shared/sheets.ts) and hands the rows in.
 */
export function parseMacCsv(file: string | SheetRow[]): ParsedMacCsv {
  const rows = typeof file === 'string' ? readCsv(file, MAX_IMPORT_ROWS + 1) : file;
  if (!rows.length) throw badRequest('csv_empty', 'the CSV file has no rows');
  const header = rows[0]!;
  let column = header.cells.findIndex((h) => h.toUpperCase() === 'MAC');
  let data = rows.slice(1);
  if (column < 0) {
    if (!looksLikeMac(header.cells[0] ?? '')) {
      throw badRequest('csv_header_missing', 'the CSV file needs a "MAC" header column as in the MAC template', { line: header.line, value: header.cells.join(',').slice(0, 100) });
    }
    column = 0;
    data = rows;
  }
  if (data.length > MAX_IMPORT_ROWS) {
    throw badRequest('too_many_rows', `the CSV file has more than ${MAX_IMPORT_ROWS} rows; at most ${MAX_IMPORT_ROWS} can be imported at once`, { maxRows: MAX_IMPORT_ROWS });
  }

  const result: ParsedMacCsv = { rows: [], invalid: [] };
  for (const { line, cells } of data) {
    const value = cells[column] ?? '';
    if (value === '') {
      result.invalid.push({ line, value, reason: 'empty MAC cell' });
      continue;
    }
    const parsed = parseMac(value);
    if ('mac' in parsed) result.rows.push({ line, mac: parsed.mac });
    else result.invalid.push({ line, value: value.slice(0, 100), reason: parsed.reason });
  }
  return result;
}
