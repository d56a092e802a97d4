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

/** Splits one CSV line, honouring double quotes (the portal's template is a one-column spreadsheet export). */
function splitCsvLine(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',' || ch === ';') {
      cells.push(cell);
      cell = '';
    } else cell += ch;
  }
  cells.push(cell);
  return cells.map((c) => c.trim());
}

/**
 * Parses the MAC template: a `MAC` header column (any case, other columns ignored), one MAC per row.
 * A file without a header whose first row is a MAC is accepted too. BOM, CRLF and blank lines are tolerated.
 */
export function parseMacCsv(text: string): ParsedMacCsv {
  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/);
  let column = 0;
  let start = 0;
  while (start < lines.length && lines[start]!.trim() === '') start++;
  if (start === lines.length) throw badRequest('csv_empty', 'the CSV file has no rows');

  const header = splitCsvLine(lines[start]!);
  const macColumn = header.findIndex((h) => h.toUpperCase() === 'MAC');
  if (macColumn >= 0) {
    column = macColumn;
    start++;
  } else if (!looksLikeMac(header[0] ?? '')) {
    throw badRequest('csv_header_missing', 'the CSV file needs a "MAC" header column as in the MAC template', { line: start + 1, value: lines[start]!.slice(0, 100) });
  }

  const dataLines = lines.slice(start).filter((l) => l.trim() !== '').length;
  if (dataLines > MAX_IMPORT_ROWS) {
    throw badRequest('too_many_rows', `the CSV file has ${dataLines} rows; at most ${MAX_IMPORT_ROWS} can be imported at once`, { rows: dataLines, maxRows: MAX_IMPORT_ROWS });
  }

  const result: ParsedMacCsv = { rows: [], invalid: [] };
  for (let i = start; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.trim() === '') continue;
    const value = splitCsvLine(raw)[column] ?? '';
    const line = i + 1;
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
