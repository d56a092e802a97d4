import { and, eq, inArray } from 'drizzle-orm';
import type { Queryable, Tx } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import { apartments, buildings } from '../directory/tables.js';
import { ixgApps, ixgSites, ixgStations } from '../ixg/tables.js';
import type { AddressBookEntry } from './schemas.js';
import { appStations, sipRegistrations } from './tables.js';

// App stations of IXG units (seed 000 "Mobile App Service"): the upload lists up to 8 apps per unit, each
// with its address book and door release; an app connected by the unit's QR code takes the first free one.

/** IXG numbers in the Support Tool's order: shorter first, then by digits. */
const byNumber = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

/** The unit's app listings and the first one no app station holds yet (null: all connected). */
export async function ixgSlots(q: Queryable, siteId: string, apartmentId: string): Promise<{ listed: number; free: string | null }> {
  const [listed, taken] = await Promise.all([
    q.select({ number: ixgApps.number }).from(ixgApps).where(and(eq(ixgApps.siteId, siteId), eq(ixgApps.apartmentId, apartmentId))),
    q.select({ number: appStations.ixgApp }).from(appStations).where(eq(appStations.apartmentId, apartmentId)),
  ]);
  const held = new Set(taken.map((t) => t.number));
  const free = listed.map((l) => l.number).sort(byNumber).find((n) => !held.has(n)) ?? null;
  return { listed: listed.length, free };
}

/** The SIP number IXG stations are reached at: the gateway that uploaded the site's settings. */
export async function ixgGatewayNumber(q: Queryable, siteId: string): Promise<{ mac: string; sipNumber: string } | null> {
  const [site] = await q.select({ mac: ixgSites.gatewayMac }).from(ixgSites).where(eq(ixgSites.siteId, siteId));
  if (!site) return null;
  const [gateway] = await deviceFacts(q, [site.mac]);
  return gateway ? { mac: gateway.mac, sipNumber: gateway.sipNumber } : null;
}

/**
 * An IXG app's address book: the stations its listing names, reached through the gateway (`sipNumber` is
 * the gateway's; `ixgStation` the station's IXG number), with the door release the listing grants.
 */
export async function ixgAddressBook(q: Queryable, siteId: string, app: string): Promise<AddressBookEntry[]> {
  const [listing] = await q.select({ addressBook: ixgApps.addressBook }).from(ixgApps).where(and(eq(ixgApps.siteId, siteId), eq(ixgApps.number, app)));
  if (!listing?.addressBook.length) return [];
  const numbers = listing.addressBook.map((e) => e.station);
  const [stations, gateway] = await Promise.all([
    q
      .select({ number: ixgStations.number, name: ixgStations.name, unitType: apartments.unitType })
      .from(ixgStations)
      .leftJoin(apartments, eq(apartments.id, ixgStations.apartmentId))
      .where(and(eq(ixgStations.siteId, siteId), inArray(ixgStations.number, numbers))),
    ixgGatewayNumber(q, siteId),
  ]);
  if (!gateway) return [];
  const byStation = new Map(stations.map((s) => [s.number, s]));
  return listing.addressBook.flatMap((e): AddressBookEntry[] => {
    const s = byStation.get(e.station);
    if (!s) return [];
    return [{ sipNumber: gateway.sipNumber, name: s.name, type: s.unitType === 'entrance' ? 'door-phone' : 'ixg-station', location: null, doorRelease: e.doorRelease, ixgStation: s.number }];
  });
}

/**
 * Before an upload is mirrored: the site's app stations whose listing the upload no longer has in their
 * unit lose their account (the Support Tool removed the app); answers how many went.
 */
export async function withdrawIxgApps(tx: Tx, siteId: string, keep: ReadonlySet<string>): Promise<number> {
  const rows = await tx
    .select({ id: appStations.id, sipNumber: appStations.sipNumber, app: appStations.ixgApp, unit: apartments.number, building: buildings.ixgNumber })
    .from(appStations)
    .innerJoin(apartments, eq(apartments.id, appStations.apartmentId))
    .innerJoin(buildings, eq(buildings.id, apartments.buildingId))
    .where(eq(appStations.siteId, siteId));
  const gone = rows.filter((r) => !r.app || !keep.has(ixgAppKey(r.building ?? '', r.unit, r.app)));
  if (!gone.length) return 0;
  await tx.delete(sipRegistrations).where(inArray(sipRegistrations.sipNumber, gone.map((g) => g.sipNumber)));
  await tx.delete(appStations).where(inArray(appStations.id, gone.map((g) => g.id)));
  return gone.length;
}

/** Where an app listing sits in an upload: building number, unit number, app number. */
export const ixgAppKey = (building: string, unit: string, app: string) => `${building}/${unit}/${app}`;
