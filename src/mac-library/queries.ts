import { eq } from 'drizzle-orm';
import type { Queryable } from '../db/client.js';
import { macLibrary } from './tables.js';

// What other domains may ask of the MAC library table, as query functions.

/** The MAC's library entry, locked for the caller's transaction (binding a device serialises on it). */
export async function lockLibraryEntry(q: Queryable, mac: string): Promise<{ installerId: string } | null> {
  const rows = await q.select({ installerId: macLibrary.installerId }).from(macLibrary).where(eq(macLibrary.mac, mac)).for('update').limit(1);
  return rows[0] ?? null;
}
