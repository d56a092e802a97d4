import { CsvError, parse, type Options } from 'csv-parse/sync';
import { badRequest, tooLarge } from './errors.js';
import { escapeFormula, unescapeFormula } from './text.js';

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
function detectSeparator(text: string): ';' | ',' {
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

/** Cells one file may hold (the xlsx reader counts them before parsing, this one while parsing). */
export const tooManyCells = (maxCells: number, found?: number) =>
  tooLarge('spreadsheet_too_large', `the file has ${found === undefined ? 'more than' : found} ${maxCells} cells; at most ${maxCells} are read (SPREADSHEET_MAX_CELLS)`, { limit: maxCells, ...(found !== undefined && { found }), unit: 'cells' });

/**
 * Reads a CSV file with a kept parser (quoted cells, CRLF, BOM); a malformed file is a 400 naming its line,
 * never the parser's own text. Reading stops at `maxRows` records or `maxCells` cells.
 */
export function readCsv(input: string | Buffer, maxRows: number, maxCells = Infinity): SheetRow[] {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  let records: { record: string[]; info: { lines: number } }[];
  let cells = 0;
  try {
    // With `info`, csv-parse hands on_record the record and its info (its types do not say so).
    const options = {
      delimiter: detectSeparator(text.replace(/^\uFEFF/, '')),
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      trim: true,
      to: maxRows + 2,
      on_record: (r: { record: string[]; info: { lines: number } }) => {
        cells += r.record.length;
        if (cells > maxCells) throw tooManyCells(maxCells);
        return r;
      },
    };
    records = parse(text, options as unknown as Options) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if (err instanceof Error && 'code' in err && err.code === 'spreadsheet_too_large') throw err;
    if (cause instanceof Error && 'code' in cause && cause.code === 'spreadsheet_too_large') throw cause;
    if (err instanceof CsvError) throw badRequest('csv_invalid', `the CSV file cannot be read: ${csvFault(err)}`, { line: (err as CsvError & { lines?: number }).lines ?? null });
    throw err;
  }
  return records
    .filter((r) => r.record.some((c) => c !== ''))
    .map((r) => ({ line: r.info.lines, cells: r.record.map(unescapeFormula) }));
}

/** The parser's fault in this service's words (its own messages quote internals and option names). */
function csvFault(err: CsvError): string {
  const line = (err as CsvError & { lines?: number }).lines;
  const where = line ? ` (line ${line})` : '';
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return `a quoted cell is not closed${where}`;
    case 'CSV_INVALID_CLOSING_QUOTE':
    case 'INVALID_OPENING_QUOTE':
    case 'CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE':
      return `a quote inside a cell is not doubled ("")${where}`;
    case 'CSV_MAX_RECORD_SIZE':
      return `a row is too long${where}`;
    default:
      return `the file is not valid CSV${where}`;
  }
}

/** Writes rows as CSV (`,`-separated, quoted where a cell needs it); a formula-like cell gets a leading `'`. */
export function writeCsv(rows: string[][]): string {
  const cell = (raw: string) => {
    const v = escapeFormula(raw);
    return /[",;\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
  };
  return `${rows.map((r) => r.map(cell).join(',')).join('\r\n')}\r\n`;
}
