import { badRequest } from '../shared/errors.js';
import type { AutopLine } from './tables.js';

export const MAX_AUTOP_LINES = 1000;
export const MAX_KEY_LENGTH = 128;
export const MAX_VALUE_LENGTH = 512;
/** One line as sent: key, separator and value with room for spacing. */
export const MAX_AUTOP_LINE = 1024;
/** The commands as one text: the lines, blank lines and comments included. */
export const MAX_AUTOP_TEXT = 600_000;
const KEY = /^[A-Za-z][A-Za-z0-9_.]*$/;

export interface ParsedAutop {
  lines: AutopLine[];
  /** What "duplicate commands will not be retained" removed, by 1-based line number. */
  dropped: { line: number; text: string; reason: string }[];
}

/**
 * Parses Autop commands (`Key = Value`, one per line, in the vendor's style). Blank lines and `#` comments
 * are skipped. An identical line repeated is kept once; the same key twice keeps the last value.
 * Invalid lines are a 400 listing every offending line number.
 */
export function parseAutop(input: string | string[]): ParsedAutop {
  const rows = Array.isArray(input) ? input : input.split(/\r\n|\n|\r/);
  const nonBlank = rows.filter((r) => r.trim() !== '' && !r.trim().startsWith('#')).length;
  if (nonBlank > MAX_AUTOP_LINES) throw badRequest('too_many_lines', `at most ${MAX_AUTOP_LINES} Autop lines per submission (got ${nonBlank})`, { maxLines: MAX_AUTOP_LINES, lines: nonBlank });
  if (nonBlank === 0) throw badRequest('no_commands', 'give at least one Autop command (Key = Value)');

  const invalid: { line: number; text: string; reason: string }[] = [];
  const parsed: { line: number; key: string; value: string; text: string }[] = [];
  rows.forEach((raw, i) => {
    const line = i + 1;
    if (/[\r\n]/.test(raw)) return invalid.push({ line, text: raw.slice(0, 80), reason: 'one command per line' });
    const text = raw.trim();
    if (text === '' || text.startsWith('#')) return;
    const eq = text.indexOf('=');
    if (eq < 0) return invalid.push({ line, text: text.slice(0, 80), reason: 'expected Key = Value' });
    const key = text.slice(0, eq).trim();
    const value = text.slice(eq + 1).trim();
    if (!KEY.test(key)) return invalid.push({ line, text: text.slice(0, 80), reason: 'key must start with a letter and hold only letters, digits, dots and underscores' });
    if (key.length > MAX_KEY_LENGTH) return invalid.push({ line, text: text.slice(0, 80), reason: `key longer than ${MAX_KEY_LENGTH} characters` });
    if (value.length > MAX_VALUE_LENGTH) return invalid.push({ line, text: text.slice(0, 80), reason: `value longer than ${MAX_VALUE_LENGTH} characters` });
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(value)) return invalid.push({ line, text: text.slice(0, 80), reason: 'value holds control characters' });
    parsed.push({ line, key, value, text: `${key} = ${value}` });
  });
  if (invalid.length) {
    throw badRequest('invalid_autop', `invalid Autop lines: ${invalid.map((l) => l.line).join(', ')}`, { lines: invalid });
  }

  const dropped: ParsedAutop['dropped'] = [];
  const lastByKey = new Map<string, (typeof parsed)[number]>();
  const seenText = new Set<string>();
  for (const p of parsed) {
    if (seenText.has(p.text)) {
      dropped.push({ line: p.line, text: p.text, reason: 'duplicate of an earlier line' });
      continue;
    }
    seenText.add(p.text);
    const earlier = lastByKey.get(p.key);
    if (earlier) dropped.push({ line: earlier.line, text: earlier.text, reason: `same key as line ${p.line}, which is kept` });
    lastByKey.set(p.key, p);
  }
  const kept = [...lastByKey.values()].sort((a, b) => a.line - b.line);
  dropped.sort((a, b) => a.line - b.line);
  return { lines: kept.map(({ key, value }) => ({ key, value })), dropped };
}

/** Lines of `update` override same-key lines of `base`; other base lines stay. */
export function mergeAutop(base: AutopLine[], update: AutopLine[]): AutopLine[] {
  const keys = new Set(update.map((l) => l.key));
  return [...base.filter((l) => !keys.has(l.key)), ...update];
}

export const renderAutopLine = (l: AutopLine) => `${l.key} = ${l.value}`;
