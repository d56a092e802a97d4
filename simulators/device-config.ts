import type { DocumentReference } from '../src/provisioning/channel.js';

// How a device reads configuration text (docs/device-protocol.md, "Configuration lines"): one rule for
// managed configurations and one-time lines alike, so the simulator is the reference reader.

/** Spaces and tabs only: other characters (a no-break space) belong to the value. */
const trimBlanks = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');

export interface ConfigLine {
  key: string;
  /** Empty: the key is unset (it takes the device's default). */
  value: string;
}

/**
 * Lines `Key = Value`: a line whose first non-blank character is `#` is a comment, and so is a blank line;
 * the key is what precedes the first `=`, the value everything after it, both trimmed of spaces and tabs.
 * There are no inline comments: in `Key = 0 # x` the value is `0 # x`. A line without `=` is skipped.
 */
export function parseConfigLines(text: string): ConfigLine[] {
  const lines: ConfigLine[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const content = trimBlanks(line);
    if (content === '' || content.startsWith('#')) continue;
    const eq = content.indexOf('=');
    const key = eq < 0 ? '' : trimBlanks(content.slice(0, eq));
    if (key === '') continue;
    lines.push({ key, value: trimBlanks(content.slice(eq + 1)) });
  }
  return lines;
}

/**
 * A device's configuration: the managed configuration, replaced as a whole by each configuration command,
 * and what one-time lines set over it. One-time lines are actions: their values stay until something sets
 * the key again, a configuration from which a managed key leaves (it returns to its default), or a reset.
 */
export class DeviceConfiguration {
  /** The keys the last managed configuration set: a key that leaves it goes back to its default (absent here). */
  private managed = new Set<string>();

  constructor(readonly values: Map<string, string>) {}

  applyManaged(text: string): void {
    const next = new Map<string, string>();
    for (const { key, value } of parseConfigLines(text)) next.set(key, value); // a later line wins
    for (const key of this.managed) if (!next.has(key)) this.values.delete(key);
    for (const [key, value] of next) this.set(key, value);
    this.managed = new Set(next.keys());
  }

  /** One-time lines, carried out once over the configuration: outside the managed set. */
  applyOnce(lines: { key: string; value: string }[]): void {
    for (const { key, value } of lines) this.set(trimBlanks(key), trimBlanks(value));
  }

  /** A reset (either mode) clears every key the cloud set, managed or one-time, network keys included. */
  clear(): void {
    this.values.clear();
    this.managed.clear();
  }

  private set(key: string, value: string) {
    if (value === '') this.values.delete(key);
    else this.values.set(key, value);
  }
}

/** The directory documents a configuration names (`Config.Directory.{NAME}.Url`, `.Sha256`, `.Size`), by lowercase name. */
export function directoryReferences(text: string): Map<string, Partial<DocumentReference>> {
  const refs = new Map<string, Partial<DocumentReference>>();
  for (const { key, value } of parseConfigLines(text)) {
    const m = /^Config\.Directory\.([A-Z]+)\.(Url|Sha256|Size)$/.exec(key);
    if (!m) continue;
    const name = m[1]!.toLowerCase();
    const ref = refs.get(name) ?? {};
    if (m[2] === 'Url') ref.url = value;
    else if (m[2] === 'Sha256') ref.sha256 = value;
    else ref.size = Number(value);
    refs.set(name, ref);
  }
  return refs;
}
