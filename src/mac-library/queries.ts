import { eq, inArray } from 'drizzle-orm';
import type { Queryable } from '../db/client.js';
import { macLibrary } from './tables.js';

// What other domains may ask of the MAC library table, as query functions.

/** The MAC's library entry, locked for the caller's transaction (binding a device serialises on it). */
export async function lockLibraryEntry(q: Queryable, mac: string): Promise<{ installerId: string } | null> {
  const rows = await q.select({ installerId: macLibrary.installerId }).from(macLibrary).where(eq(macLibrary.mac, mac)).for('update').limit(1);
  return rows[0] ?? null;
}

/** The installer of each MAC's library entry, locked as lockLibraryEntry locks one (in MAC order: no deadlock). */
export async function lockLibraryEntries(q: Queryable, macs: string[]): Promise<Map<string, string>> {
  if (!macs.length) return new Map();
  const rows = await q.select({ mac: macLibrary.mac, installerId: macLibrary.installerId }).from(macLibrary).where(inArray(macLibrary.mac, macs)).orderBy(macLibrary.mac).for('update');
  return new Map(rows.map((r) => [r.mac, r.installerId]));
}
