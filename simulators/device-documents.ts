import { createHash } from 'node:crypto';
import type { DocumentReference } from '../src/provisioning/channel.js';
import { directoryReferences } from './device-config.js';

// Documents as a device fetches them (docs/device-protocol.md, "Documents"): with its own credentials,
// checked against the SHA-256 that names them before anything is used.

export type HeldDocuments = Map<string, { sha256: string; content: unknown }>;

/** Fetches of one document at most: a refused connection or a 429/503 is tried again after a pause. */
const FETCH_ATTEMPTS = 5;

/**
 * The document's bytes as text, or null when it cannot be fetched or its bytes do not match `sha256`. As the
 * protocol asks, a connection refused or reset (a listener at its connection cap) and 429/503 are tried again,
 * after 250 ms doubling, with full jitter; any other answer is final.
 */
/** How long one document fetch may take, body included. */
const FETCH_TIMEOUT_MS = 30_000;

export async function fetchDocument(ref: DocumentReference, auth: string, fetches: { url: string; status: number }[]): Promise<string | null> {
  for (let attempt = 1; ; attempt++) {
    let status = 0;
    try {
      // A device gives up on a fetch that does not finish in time, as firmware does, and tries again.
      const res = await fetch(ref.url, { headers: { authorization: auth, 'accept-encoding': 'gzip' }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      status = res.status;
      fetches.push({ url: ref.url, status });
      if (status === 200) {
        const body = Buffer.from(await res.arrayBuffer());
        return createHash('sha256').update(body).digest('hex') === ref.sha256 ? body.toString('utf8') : null;
      }
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      fetches.push({ url: ref.url, status: 0 });
    }
    if (![0, 429, 503].includes(status) || attempt >= FETCH_ATTEMPTS) return null;
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 250 * 2 ** (attempt - 1)));
  }
}

/**
 * The directory documents a configuration names (`Config.Directory.{NAME}.Url`, `.Sha256`, `.Size`):
 * those already held are kept, the others fetched and verified. Null when one cannot be had (or is no JSON).
 */
export async function fetchNamedDocuments(text: string, held: HeldDocuments, get: (ref: DocumentReference) => Promise<string | null>): Promise<HeldDocuments | null> {
  const next: HeldDocuments = new Map();
  for (const [name, ref] of directoryReferences(text)) {
    const kept = held.get(name);
    if (kept && kept.sha256 === ref.sha256) {
      next.set(name, kept);
      continue;
    }
    if (!ref.url || !ref.sha256) return null;
    const body = await get(ref as DocumentReference);
    if (body === null) return null;
    try {
      next.set(name, { sha256: ref.sha256, content: JSON.parse(body) as unknown });
    } catch {
      return null;
    }
  }
  return next;
}

/** The lines of a one-time Autop document (a JSON array of key and value), or null when it cannot be had. */
export async function fetchOneTimeLines(ref: DocumentReference, get: (ref: DocumentReference) => Promise<string | null>): Promise<{ key: string; value: string }[] | null> {
  const body = await get(ref);
  try {
    const lines = body === null ? null : (JSON.parse(body) as unknown);
    return Array.isArray(lines) ? (lines as { key: string; value: string }[]) : null;
  } catch {
    return null;
  }
}

/** Whether a door phone holding these documents opens for the PIN (in `apt-pin` mode: with the apartment number) at `at`. */
export function acceptsPin(held: HeldDocuments, code: string, apartment: string | undefined, at: Date): boolean {
  const list = held.get('credentials')?.content as { pinMode: string; pins: { code: string; apartment: string; validFrom: string | null; validUntil: string | null }[] } | undefined;
  if (!list) return false;
  return list.pins.some(
    (p) =>
      p.code === code &&
      (list.pinMode === 'pin' || p.apartment === apartment) &&
      (!p.validFrom || Date.parse(p.validFrom) <= at.getTime()) &&
      (!p.validUntil || at.getTime() < Date.parse(p.validUntil)),
  );
}

/**
 * What an access terminal holding these documents does for a card at `at`: whether it opens, and the lift
 * floors it enables (the card's `floors`; none when it does not open).
 */
export function cardAccess(held: HeldDocuments, number: string, at: Date): { opens: boolean; floors: string[] } {
  const list = held.get('credentials')?.content as { cards: { number: string; validFrom: string | null; validUntil: string | null; floors?: string[] }[] } | undefined;
  const card = list?.cards.find((c) => c.number === number && (!c.validFrom || Date.parse(c.validFrom) <= at.getTime()) && (!c.validUntil || at.getTime() < Date.parse(c.validUntil)));
  return card ? { opens: true, floors: card.floors ?? [] } : { opens: false, floors: [] };
}
