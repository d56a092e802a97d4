import { and, eq, inArray, sql } from 'drizzle-orm';
import type { Tx } from '../db/client.js';
import { conflict } from '../shared/errors.js';
import { inChunks } from './access.js';
import { apartments, buildings, placements, residents, sites } from './tables.js';

/** The buildings and units of an IXG upload, as the directory keeps them. */
export interface MirroredBuilding {
  number: string;
  name: string;
  units: { number: string; name: string; type: string }[];
}

export interface MirrorResult {
  buildingIds: Map<string, string>;
  /** Apartment id by `building number/unit number`. */
  apartmentIds: Map<string, string>;
}

/**
 * Makes the site's buildings and apartments what an IXG upload says (matched by building number and unit
 * number), in the caller's transaction, and marks the site IXG-managed. The first upload needs a site of
 * no directory of its own: the mirror owns every building and apartment of an IXG site.
 */
export async function mirrorIxgUnits(tx: Tx, siteId: string, upload: MirroredBuilding[]): Promise<MirrorResult> {
  const [site] = await tx.select({ managedBy: sites.managedBy }).from(sites).where(eq(sites.id, siteId)).for('update');
  const existing = await tx.select().from(buildings).where(eq(buildings.siteId, siteId));
  if (site?.managedBy !== 'ixg') {
    const [ours] = await tx.select({ n: sql<number>`count(*)::int` }).from(residents).where(eq(residents.siteId, siteId));
    const [placed] = await tx.select({ n: sql<number>`count(*)::int` }).from(placements).where(and(eq(placements.siteId, siteId), sql`${placements.buildingId} is not null`));
    if (existing.length || ours!.n || placed!.n) throw conflict('site_not_empty', 'an IXG site mirrors its upload: place the IXG gateway in a site without buildings, residents or placed devices of its own', { siteId });
    await tx.update(sites).set({ managedBy: 'ixg', updatedAt: new Date() }).where(eq(sites.id, siteId));
  }

  // Buildings by IXG number: renamed in two steps, so that two buildings swapping names never collide.
  const byNumber = new Map(existing.map((b) => [b.ixgNumber ?? '', b]));
  const wanted = new Map(upload.map((b) => [b.number, b]));
  const gone = existing.filter((b) => !b.ixgNumber || !wanted.has(b.ixgNumber)).map((b) => b.id);
  if (gone.length) await tx.delete(buildings).where(inArray(buildings.id, gone));
  const renamed = upload.filter((b) => byNumber.has(b.number) && byNumber.get(b.number)!.name !== b.name);
  for (const b of renamed) await tx.update(buildings).set({ name: `(renaming ${b.number})` }).where(eq(buildings.id, byNumber.get(b.number)!.id));
  for (const b of renamed) await tx.update(buildings).set({ name: b.name }).where(eq(buildings.id, byNumber.get(b.number)!.id));
  const added = upload.filter((b) => !byNumber.has(b.number));
  const buildingIds = new Map(upload.filter((b) => byNumber.has(b.number)).map((b) => [b.number, byNumber.get(b.number)!.id]));
  for (const b of await inChunks(added, (c) => tx.insert(buildings).values(c.map((x) => ({ siteId, name: x.name, ixgNumber: x.number }))).returning())) buildingIds.set(b.ixgNumber!, b.id);

  // Units: an apartment per unit, its number what a visitor dials.
  const rows = await tx.select().from(apartments).where(eq(apartments.siteId, siteId));
  const numberOf = new Map([...buildingIds].map(([number, id]) => [id, number]));
  const held = new Map(rows.map((a) => [`${numberOf.get(a.buildingId)}/${a.number}`, a]));
  const apartmentIds = new Map<string, string>();
  const inserts: (typeof apartments.$inferInsert)[] = [];
  for (const b of upload) {
    for (const u of b.units) {
      const key = `${b.number}/${u.number}`;
      const a = held.get(key);
      if (!a) inserts.push({ siteId, buildingId: buildingIds.get(b.number)!, number: u.number, name: u.name, unitType: u.type });
      else {
        apartmentIds.set(key, a.id);
        if (a.name !== u.name || a.unitType !== u.type) await tx.update(apartments).set({ name: u.name, unitType: u.type }).where(eq(apartments.id, a.id));
      }
    }
  }
  const keep = new Set(upload.flatMap((b) => b.units.map((u) => `${b.number}/${u.number}`)));
  const removed = [...held].filter(([key]) => !keep.has(key)).map(([, a]) => a.id);
  if (removed.length) await tx.delete(apartments).where(inArray(apartments.id, removed));
  for (const a of await inChunks(inserts, (c) => tx.insert(apartments).values(c).returning())) apartmentIds.set(`${numberOf.get(a.buildingId)}/${a.number}`, a.id);
  return { buildingIds, apartmentIds };
}
