import { asc, count, eq } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Queryable, Tx } from '../db/client.js';
import { notFound } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import type { ApartmentView, CreateApartmentInput, PatchApartmentInput } from './schemas.js';
import { type DirectoryAccess, editable, type SiteRow, uniqueConflict } from './access.js';
import { apartments, credentials, placements, residents, sites } from './tables.js';

export type ApartmentRow = typeof apartments.$inferSelect;

const apartmentView = (a: ApartmentRow): ApartmentView => ({
  id: a.id,
  siteId: a.siteId,
  buildingId: a.buildingId,
  number: a.number,
  name: a.name,
  floor: a.floor,
  contactPreference: a.contactPreference,
  networkGroup: a.networkGroup,
  webRelayId: a.webRelayId,
  unitType: a.unitType ?? null,
  createdAt: a.createdAt.toISOString(),
});

/** What other domains gave an apartment's tenants, withdrawn when the tenants leave. */
export interface TenantAccessWithdrawn {
  appStationsRemoved: number;
  codesRevoked: number;
}

/**
 * The access other domains give an apartment's tenants (the calls domain's app stations and registration
 * codes). The directory withdraws it inside its own transaction when the tenants leave (a reset, the
 * apartment removed), so the reset and the eviction commit together with their audit row, or not at all.
 */
export interface TenantAccess {
  withdraw(tx: Tx, apartmentId: string): Promise<TenantAccessWithdrawn>;
}

const noTenantAccess: TenantAccess = { withdraw: async () => ({ appStationsRemoved: 0, codesRevoked: 0 }) };

export interface ApartmentReset extends TenantAccessWithdrawn {
  residentsRemoved: number;
  credentialsRemoved: number;
}

const apartmentConflicts: Record<string, [string, string]> = {
  apartments_building_number_idx: ['apartment_number_taken', 'the building already has an apartment with that number'],
};

/** The directory's apartments: their records, and their reset for new tenants. */
export class Apartments {
  private tenants: TenantAccess = noTenantAccess;

  constructor(private readonly d: DirectoryAccess) {}

  /** The domain whose access for tenants an apartment's reset or removal withdraws (the calls domain's app stations). */
  useTenantAccess(access: TenantAccess): void {
    this.tenants = access;
  }

  /**
   * The apartment and its site when the caller may see them (404 otherwise). `share` keeps it from being
   * reset until the caller's transaction ends (a registration code made meanwhile is revoked by the reset, or
   * made after it); `reset` is the reset's own lock.
   */
  async find(q: Queryable, principal: Principal | null, apartmentId: string, lock?: 'share' | 'reset'): Promise<{ apartment: ApartmentRow; site: SiteRow }> {
    const query = q.select({ apartment: apartments, site: sites }).from(apartments).innerJoin(sites, eq(sites.id, apartments.siteId)).where(eq(apartments.id, apartmentId)).limit(1);
    // NO KEY UPDATE, not UPDATE: a code being redeemed meanwhile inserts its station (a key share on the
    // apartment) while holding the code the reset revokes next; UPDATE would make the two wait on each other.
    const rows = lock === 'share' ? await query.for('share', { of: apartments }) : lock === 'reset' ? await query.for('no key update', { of: apartments }) : await query;
    const row = rows[0];
    if (!row || (principal && !this.d.owns(principal, row.site))) throw notFound('apartment', { apartmentId });
    return row;
  }

  async create(principal: Principal, buildingId: string, input: CreateApartmentInput): Promise<ApartmentView> {
    return this.d.write(async (tx) => {
      const { site } = await this.d.building(tx, principal, buildingId);
      editable(site);
      try {
        const [row] = await tx
          .insert(apartments)
          .values({ siteId: site.id, buildingId, ...input })
          .returning();
        await this.d.record(tx, principal, site, 'apartment.created', row!.id, null);
        return apartmentView(row!);
      } catch (err) {
        uniqueConflict(err, apartmentConflicts);
      }
    });
  }

  async list(principal: Principal, buildingId: string, q: { page: number; pageSize: number }): Promise<Page<ApartmentView>> {
    await this.d.building(this.d.db, principal, buildingId);
    const where = eq(apartments.buildingId, buildingId);
    return paginate(
      this.d.db.select().from(apartments).where(where).orderBy(asc(apartments.number), asc(apartments.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.d.db.select({ n: count() }).from(apartments).where(where),
      apartmentView,
      q.page,
      q.pageSize,
    );
  }

  async get(principal: Principal, apartmentId: string): Promise<ApartmentView> {
    return apartmentView((await this.find(this.d.db, principal, apartmentId)).apartment);
  }

  async update(principal: Principal, apartmentId: string, patch: PatchApartmentInput): Promise<ApartmentView> {
    return this.d.write(async (tx) => {
      const { site } = await this.find(tx, principal, apartmentId);
      editable(site);
      try {
        const [row] = await tx.update(apartments).set(patch).where(eq(apartments.id, apartmentId)).returning();
        await this.d.record(tx, principal, site, 'apartment.updated', apartmentId, patch);
        return apartmentView(row!);
      } catch (err) {
        uniqueConflict(err, apartmentConflicts);
      }
    });
  }

  /** Deletes an apartment with its residents; its app stations and registration codes go with it. */
  async remove(principal: Principal, apartmentId: string): Promise<void> {
    await this.d.write(async (tx) => {
      const { site } = await this.find(tx, principal, apartmentId, 'reset');
      editable(site);
      await this.d.refuseWhilePlaced(tx, eq(placements.apartmentId, apartmentId), 'apartment_has_devices', 'the apartment still has devices placed in it; move or unplace them first');
      const withdrawn = await this.tenants.withdraw(tx, apartmentId);
      await tx.delete(apartments).where(eq(apartments.id, apartmentId));
      await this.d.record(tx, principal, site, 'apartment.removed', apartmentId, { appStations: withdrawn.appStationsRemoved, codes: withdrawn.codesRevoked });
    });
  }

  /**
   * Resets an apartment for new tenants (seed 004 "Reset apartment"): its residents, family members and
   * their PIN codes and cards go, and so do its app stations (their SIP accounts fail at once) and its
   * unredeemed registration codes; the apartment, its number, name and devices stay, and its devices are
   * provisioned again. All in one transaction with its audit row.
   */
  async reset(principal: Principal, apartmentId: string): Promise<ApartmentReset> {
    return this.d.write(async (tx) => {
      // Allowed in an IXG unit too: it disconnects the unit's apps, as the IXG portal lets an installer.
      const { site } = await this.find(tx, principal, apartmentId, 'reset');
      const withdrawn = await this.tenants.withdraw(tx, apartmentId);
      const removedCredentials = await tx.delete(credentials).where(eq(credentials.apartmentId, apartmentId)).returning({ id: credentials.id });
      const removedResidents = await tx.delete(residents).where(eq(residents.apartmentId, apartmentId)).returning({ id: residents.id });
      const answer = { residentsRemoved: removedResidents.length, credentialsRemoved: removedCredentials.length, ...withdrawn };
      await this.d.record(tx, principal, site, 'apartment.reset', apartmentId, {
        residents: answer.residentsRemoved,
        credentials: answer.credentialsRemoved,
        appStations: answer.appStationsRemoved,
        codes: answer.codesRevoked,
      });
      return answer;
    });
  }
}
