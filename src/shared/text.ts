import { z } from 'zod';

// Text from outside (API bodies and queries, device payloads, CSV cells) is checked here before it can
// reach the database or a rendered configuration: PostgreSQL refuses NUL in text, and a line break in a
// name would split a configuration line.

/** C0 and C1 control characters and DEL. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_GLOBAL = /[\u0000-\u001f\u007f-\u009f]/g;

export const hasControlCharacters = (value: string) => CONTROL.test(value);

/** A single-line text field: trimmed, length-bounded, no control characters. */
export const singleLine = (max: number, min = 0) =>
  z
    .string()
    .trim()
    .min(min)
    .max(max)
    .regex(/^[^\u0000-\u001f\u007f-\u009f]*$/, 'must not contain control characters (NUL, line breaks, tabs, …)');

/** A multi-line text field: line breaks and tabs allowed, other control characters not. */
export const multiLine = (max: number) =>
  z
    .string()
    .max(max)
    .regex(/^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$/, 'must not contain control characters other than line breaks and tabs');

/**
 * Cleans text a device sent where refusing it would lose information (the error of a failed command):
 * control characters become U+FFFD and the text is cut to `max` characters.
 */
export const cleanDeviceText = (value: string, max: number) => value.replace(CONTROL_GLOBAL, '\ufffd').slice(0, max);

// A spreadsheet program reads a cell that begins with =, +, -, @, tab or carriage return as a formula
// (OWASP "CSV injection"): exports prefix such a cell with `'`, imports take that prefix off again.
const FORMULA_START = /^[=+\-@\t\r]/;

const startsLikeFormula = (value: string) => FORMULA_START.test(value);

/** A cell for an exported spreadsheet: `'` before a formula-like start, so the program shows it as text. */
export const escapeFormula = (value: string) => (FORMULA_START.test(value) ? `'${value}` : value);

/** An imported cell: the export's `'` before a formula-like start is taken off (`'+49` reads `+49`). */
export const unescapeFormula = (value: string) => (value.startsWith("'") && FORMULA_START.test(value.slice(1)) ? value.slice(1) : value);

/**
 * A name people and devices display and spreadsheets carry (residents, apartments, buildings): a single
 * line that does not begin like a formula. Refused rather than altered, so a name reads as it was typed.
 */
export const nameText = (max: number, min = 0) =>
  singleLine(max, min)
    .refine((v) => !startsLikeFormula(v), 'must not begin with =, +, - or @ (a spreadsheet would read it as a formula)')
    .describe('a single line not beginning with =, +, - or @ (refused: a spreadsheet would read it as a formula)');
