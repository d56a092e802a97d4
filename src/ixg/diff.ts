import type { IxgSiteDocument } from './schemas.js';

/** What one upload changed against the one before, by the IXG system's numbers. */
export interface IxgDiff {
  counts: Record<'buildings' | 'units' | 'stations' | 'apps' | 'gateways', { added: number; removed: number; changed: number }>;
  /** The changes themselves (`units 01/101: added`), the first `MAX_LISTED`. */
  changes: string[];
}

const MAX_LISTED = 200;

type Keyed = Map<string, string>;

/** Each part of a document by its key, with a canonical text of what can change. */
function parts(doc: IxgSiteDocument | null): Record<keyof IxgDiff['counts'], Keyed> {
  const out = { buildings: new Map(), units: new Map(), stations: new Map(), apps: new Map(), gateways: new Map() } as Record<keyof IxgDiff['counts'], Keyed>;
  if (!doc) return out;
  for (const g of doc.gateways) out.gateways.set(g.mac, JSON.stringify([g.number, g.name, g.ip]));
  for (const b of doc.buildings) {
    out.buildings.set(b.number, JSON.stringify([b.name]));
    for (const u of b.units) {
      const unit = `${b.number}/${u.number}`;
      out.units.set(unit, JSON.stringify([u.name, u.type]));
      for (const s of u.stations) out.stations.set(s.number, JSON.stringify([unit, s.name, s.type, s.ip]));
      for (const a of u.apps) out.apps.set(a.number, JSON.stringify([unit, a.name, [...a.addressBook].sort((x, y) => (x.station < y.station ? -1 : 1))]));
    }
  }
  return out;
}

/** With `same` (the settings are the last upload's), the all-zero answer without walking the documents. */
export function diffUploads(before: IxgSiteDocument | null, after: IxgSiteDocument, same = false): IxgDiff {
  const a = parts(same ? null : before);
  const b = parts(same ? null : after);
  const changes: string[] = [];
  const counts = {} as IxgDiff['counts'];
  for (const kind of ['gateways', 'buildings', 'units', 'stations', 'apps'] as const) {
    const c = { added: 0, removed: 0, changed: 0 };
    const note = (key: string, what: string) => void (changes.length < MAX_LISTED && changes.push(`${kind} ${key}: ${what}`));
    for (const [key, value] of b[kind]) {
      const old = a[kind].get(key);
      if (old === undefined) (c.added++, note(key, 'added'));
      else if (old !== value) (c.changed++, note(key, 'changed'));
    }
    for (const key of a[kind].keys()) if (!b[kind].has(key)) (c.removed++, note(key, 'removed'));
    counts[kind] = c;
  }
  return { counts, changes };
}
