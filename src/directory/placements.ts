import { and, eq, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Principal } from '../accounts/service.js';
import type { Queryable, Tx } from '../db/client.js';
import type { DevicePlacements, DevicePlacementView, PlacementFilter } from '../devices/placement.js';
import { APARTMENT_TYPES } from '../devices/types.js';
import { badRequest } from '../shared/errors.js';
import { editable, notFoundAs, type DirectoryAccess } from './access.js';
import type { Apartments } from './apartments.js';
import { apartments, placements, sites, type ContactPreference } from './tables.js';

/** The part of a site one call's routing needs (DirectoryService.callDirectory). */
export interface CallDirectory {
  site: { id: string; installerId: string; communityCalls: boolean };
  apartments: { id: string; buildingId: string; number: string; contactPreference: ContactPreference }[];
  placements: { mac: string; buildingId: string | null; apartmentId: string | null }[];
}

/** Where devices are installed (what the devices domain asks through `DevicePlacements`), and what calls read of it. */
export class Placements implements DevicePlacements {
  constructor(
    private readonly d: DirectoryAccess,
    private readonly apartments: Apartments,
  ) {}

  committed(): void {
    this.d.committed();
  }

  /** Where the devices serving an apartment are placed: its site's public area, its building (outside apartments), the apartment itself. */
  async placementsServing(q: Queryable, apartment: { id: string; siteId: string; buildingId: string }): Promise<(DevicePlacementView & { mac: string })[]> {
    return q
      .select({ mac: placements.mac, siteId: placements.siteId, buildingId: placements.buildingId, apartmentId: placements.apartmentId })
      .from(placements)
      .where(
        and(
          eq(placements.siteId, apartment.siteId),
          sql`((${placements.buildingId} IS NULL AND ${placements.apartmentId} IS NULL) OR (${placements.buildingId} = ${apartment.buildingId} AND ${placements.apartmentId} IS NULL) OR ${placements.apartmentId} = ${apartment.id})`,
        ),
      );
  }

  async place(tx: Tx, principal: Principal, device: { mac: string; type: string; installerId: string }, target: DevicePlacementView | null): Promise<void> {
    const before = await tx.select().from(placements).where(eq(placements.mac, device.mac)).limit(1).for('update');
    // A device is only ever placed in its own installer's sites: the one it leaves is its installer's too.
    if (before[0]) await this.d.record(tx, principal, { id: before[0].siteId, installerId: device.installerId }, 'device.moved-out', device.mac, null);
    if (!target) {
      await tx.delete(placements).where(eq(placements.mac, device.mac));
      return;
    }
    const site = await this.d.site(tx, principal, target.siteId);
    if (site.installerId !== device.installerId) throw badRequest('placement_invalid', "the site does not belong to the device's installer", { siteId: target.siteId });
    let buildingId = target.buildingId;
    // An IXG site's buildings and units are its IXG system's: devices of ours go in its public area only.
    if (buildingId || target.apartmentId) editable(site);
    if (target.apartmentId) {
      const { apartment } = await this.apartments.find(tx, principal, target.apartmentId).catch(notFoundAs('placement_invalid', 'no such apartment', { apartmentId: target.apartmentId }));
      if (apartment.siteId !== site.id || (buildingId && apartment.buildingId !== buildingId)) throw badRequest('placement_invalid', 'the apartment is not in that site and building', { apartmentId: target.apartmentId });
      if (!APARTMENT_TYPES.has(device.type)) throw badRequest('placement_invalid', 'only indoor monitors and single-tenant door phones are placed in an apartment', { type: device.type });
      buildingId = apartment.buildingId;
    } else if (buildingId) {
      const { building } = await this.d.building(tx, principal, buildingId).catch(notFoundAs('placement_invalid', 'no such building', { buildingId }));
      if (building.siteId !== site.id) throw badRequest('placement_invalid', 'the building is not in that site', { buildingId });
    }
    const values = { siteId: site.id, buildingId: buildingId ?? null, apartmentId: target.apartmentId ?? null };
    await tx
      .insert(placements)
      .values({ mac: device.mac, ...values })
      .onConflictDoUpdate({ target: placements.mac, set: values });
    await this.d.record(tx, principal, site, 'device.placed', device.mac, values);
  }

  async deviceChanged(tx: Tx, device: { mac: string; type: string }): Promise<void> {
    const rows = await tx.select().from(placements).where(eq(placements.mac, device.mac)).limit(1);
    const placement = rows[0];
    if (!placement) return;
    if (placement.apartmentId && !APARTMENT_TYPES.has(device.type)) {
      throw badRequest('placement_invalid', 'the device is placed in an apartment, where only indoor monitors and single-tenant door phones go; move it first', { type: device.type });
    }
    await this.d.changed(tx, placement.siteId, null);
  }

  async of(macs: string[], q: Queryable = this.d.db): Promise<Map<string, DevicePlacementView>> {
    if (!macs.length) return new Map();
    const rows = await q.select().from(placements).where(inArray(placements.mac, macs));
    return new Map(rows.map((r) => [r.mac, { siteId: r.siteId, buildingId: r.buildingId, apartmentId: r.apartmentId }]));
  }

  /**
   * What call routing needs of a site, for one call: whether residents may call each other, the apartments
   * that matter (those with the dialled number, and the given ones: the caller's, the callee's) with their
   * contact preference, and the devices placed in those apartments. Null: no such site. It reads only
   * those, so a call costs the same in a site of ten apartments or of ten thousand.
   */
  async callDirectory(siteId: string, focus: { apartmentNumber: string | null; apartmentIds: string[] }): Promise<CallDirectory | null> {
    const siteRows = await this.d.db.select({ id: sites.id, installerId: sites.installerId, communityCalls: sites.communityCalls }).from(sites).where(eq(sites.id, siteId)).limit(1);
    if (!siteRows[0]) return null;
    const which = [focus.apartmentNumber !== null ? eq(apartments.number, focus.apartmentNumber) : undefined, focus.apartmentIds.length ? inArray(apartments.id, focus.apartmentIds) : undefined].filter((c) => c !== undefined);
    const apartmentRows = which.length
      ? await this.d.db
          .select({ id: apartments.id, buildingId: apartments.buildingId, number: apartments.number, contactPreference: apartments.contactPreference })
          .from(apartments)
          .where(and(eq(apartments.siteId, siteId), or(...which)))
      : [];
    const placementRows = apartmentRows.length
      ? await this.d.db
          .select({ mac: placements.mac, buildingId: placements.buildingId, apartmentId: placements.apartmentId })
          .from(placements)
          .where(and(eq(placements.siteId, siteId), inArray(placements.apartmentId, apartmentRows.map((a) => a.id))))
      : [];
    return { site: siteRows[0], apartments: apartmentRows, placements: placementRows };
  }

  filter(mac: AnyPgColumn, f: PlacementFilter): SQL {
    const conditions = [
      f.siteId ? eq(placements.siteId, f.siteId) : undefined,
      f.siteIds ? (f.siteIds.length ? inArray(placements.siteId, f.siteIds) : sql`false`) : undefined,
      f.buildingId ? eq(placements.buildingId, f.buildingId) : undefined,
      f.apartmentId ? eq(placements.apartmentId, f.apartmentId) : undefined,
    ];
    return inArray(mac, this.d.db.select({ mac: placements.mac }).from(placements).where(and(...conditions)));
  }

  async deviceRemoved(tx: Tx, mac: string): Promise<void> {
    const rows = await tx.select({ siteId: placements.siteId }).from(placements).where(eq(placements.mac, mac)).limit(1);
    if (rows[0]) await this.d.changed(tx, rows[0].siteId, null);
  }
}
