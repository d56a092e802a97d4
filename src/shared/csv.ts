import { CsvError, parse } from 'csv-parse/sync';
import { badRequest } from './errors.js';

/** The media types a CSV upload arrives as (spreadsheet programs send the second for .csv). */
export const CSV_TYPES = ['text/csv', 'application/vnd.ms-excel'];

/** One row of a spreadsheet or CSV file: its 1-based line in the file and its cells, trimmed. */
export interface SheetRow {
  line: number;
  cells: string[];
}

/**
 * The separator of a CSV file: `;` or `,`, whichever the first non-empty line (the header) holds more of
 * outside quotes. Spreadsheets export one or the other by locale; a file uses one throughout, so a `,`
 * inside a `;`-separated file is text (e.g. the template's `Name,Type,MAC` device cells).
 */
export function detectSeparator(text: string): ';' | ',' {
  const first = text.split(/\r\n|\n|\r/).find((l) => l.trim() !== '') ?? '';
  let quoted = false;
  let commas = 0;
  let semicolons = 0;
  for (const ch of first) {
    if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === ',') commas++;
    else if (!quoted && ch === ';') semicolons++;
  }
  return semicolons > commas ? ';' : ',';
}

/** Reads a CSV file with a kept parser (quoted cells, CRLF, BOM); a malformed file is a 400 naming its line. */
export function readCsv(input: string | Buffer, maxRows: number): SheetRow[] {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      delimiter: detectSeparator(text.replace(/^\uFEFF/, '')),
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      trim: true,
      to: maxRows + 2,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (err) {
    if (err instanceof CsvError) throw badRequest('csv_invalid', `the CSV file cannot be read: ${err.message}`, { line: (err as CsvError & { lines?: number }).lines ?? null });
    throw err;
  }
  return records.filter((r) => r.record.some((c) => c !== '')).map((r) => ({ line: r.info.lines, cells: r.record }));
}

/** Writes rows as CSV (`,`-separated, quoted where a cell needs it). */
export function writeCsv(rows: string[][]): string {
  const cell = (v: string) => (/[",;\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  return `${rows.map((r) => r.map(cell).join(',')).join('\r\n')}\r\n`;
}
