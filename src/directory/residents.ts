import { and, asc, count, eq, ilike, or, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Queryable } from '../db/client.js';
import { conflict, notFound } from '../shared/errors.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';

import { editable, type DirectoryAccess, type SiteRow } from './access.js';
import type { Apartments } from './apartments.js';
import type { CreateResidentInput, PatchResidentInput, ResidentView } from './schemas.js';
import { apartments, buildings, residents, sites } from './tables.js';

type ResidentRow = typeof residents.$inferSelect;

const residentView = (r: ResidentRow): ResidentView => ({
  id: r.id,
  siteId: r.siteId,
  apartmentId: r.apartmentId,
  role: r.role,
  firstName: r.firstName,
  lastName: r.lastName,
  email: r.email,
  mobile: r.mobile ?? null,
  landlines: r.landlines,
  remark: r.remark,
  accessibleFloors: r.accessibleFloors,
  createdAt: r.createdAt.toISOString(),
});

/** The residents of an apartment: its main resident and family members. */
export class Residents {
  constructor(
    private readonly d: DirectoryAccess,
    private readonly apartments: Apartments,
  ) {}

  /** The resident and its site when the caller may see them (404 otherwise), read in `q`. */
  async find(q: Queryable, principal: Principal, residentId: string): Promise<{ resident: ResidentRow; site: SiteRow }> {
    const rows = await q.select({ resident: residents, site: sites }).from(residents).innerJoin(sites, eq(sites.id, residents.siteId)).where(eq(residents.id, residentId)).limit(1);
    const row = rows[0];
    if (!row || !this.d.owns(principal, row.site)) throw notFound('resident', { residentId });
    return row;
  }

  async create(principal: Principal, apartmentId: string, input: CreateResidentInput): Promise<ResidentView> {
    return this.d.write(async (tx) => {
      const { apartment, site } = await this.apartments.find(tx, principal, apartmentId);
      editable(site);
      // The apartment row is locked so two first residents cannot both become its main resident.
      await tx.select({ id: apartments.id }).from(apartments).where(eq(apartments.id, apartmentId)).for('update');
      const main = await tx
        .select({ id: residents.id })
        .from(residents)
        .where(and(eq(residents.apartmentId, apartmentId), eq(residents.role, 'main')))
        .limit(1);
      const role = input.role ?? (main[0] ? 'family' : 'main');
      if (role === 'main' && main[0]) throw conflict('main_resident_exists', 'the apartment already has a main resident', { residentId: main[0].id });
      if (role === 'family' && !main[0]) throw conflict('main_resident_missing', 'add the main resident of the apartment before family members');
      const { role: _role, ...fields } = input;
      const [row] = await tx
        .insert(residents)
        .values({ ...fields, role, siteId: site.id, apartmentId: apartment.id })
        .returning();
      await this.d.record(tx, principal, site, 'resident.created', row!.id, null);
      return residentView(row!);
    });
  }

  async list(principal: Principal, apartmentId: string, q: { page: number; pageSize: number }): Promise<Page<ResidentView>> {
    await this.apartments.find(this.d.db, principal, apartmentId);
    const where = eq(residents.apartmentId, apartmentId);
    return paginate(
      this.d.db
        .select()
        .from(residents)
        .where(where)
        .orderBy(sql`${residents.role} = 'main' DESC`, asc(residents.createdAt), asc(residents.id))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.d.db.select({ n: count() }).from(residents).where(where),
      residentView,
      q.page,
      q.pageSize,
    );
  }

  /**
   * The portal's "Residents" page: a site's residents, by building, apartment and name, with their
   * apartment; `search` matches part of a name, the email or a phone number (mobile or landline), and
   * `apartment` the apartment number.
   */
  async listSite(principal: Principal, siteId: string, q: { search?: string | undefined; apartment?: string | undefined; page: number; pageSize: number }): Promise<Page<ResidentView & { apartment: { number: string; building: string } }>> {
    await this.d.site(this.d.db, principal, siteId);
    const pattern = q.search ? likePattern(q.search) : null;
    const digits = q.search?.replace(/[^0-9]/g, '') ?? '';
    const where = and(
      eq(residents.siteId, siteId),
      q.apartment ? eq(apartments.number, q.apartment) : undefined,
      pattern
        ? or(
            ilike(sql`${residents.firstName} || ' ' || ${residents.lastName}`, pattern),
            ilike(sql`${residents.lastName} || ' ' || ${residents.firstName}`, pattern),
            ilike(residents.email, pattern),
            // Phone numbers compare by their digits: "+49 170 1234" finds 491701234….
            digits.length >= 3 ? sql`regexp_replace(coalesce(${residents.mobile}->>'countryCode', '') || coalesce(${residents.mobile}->>'number', '') || ' ' || ${residents.landlines}::text, '[^0-9 ]', '', 'g') LIKE ${`%${digits}%`}` : undefined,
          )
        : undefined,
    );
    return paginate(
      this.d.db
        .select({ resident: residents, number: apartments.number, building: buildings.name })
        .from(residents)
        .innerJoin(apartments, eq(apartments.id, residents.apartmentId))
        .innerJoin(buildings, eq(buildings.id, apartments.buildingId))
        .where(where)
        .orderBy(asc(buildings.name), asc(apartments.number), asc(residents.lastName), asc(residents.firstName), asc(residents.id))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.d.db.select({ n: count() }).from(residents).innerJoin(apartments, eq(apartments.id, residents.apartmentId)).where(where),
      (r) => ({ ...residentView(r.resident), apartment: { number: r.number, building: r.building } }),
      q.page,
      q.pageSize,
    );
  }

  async get(principal: Principal, residentId: string): Promise<ResidentView> {
    return residentView((await this.find(this.d.db, principal, residentId)).resident);
  }

  async update(principal: Principal, residentId: string, patch: PatchResidentInput): Promise<ResidentView> {
    return this.d.write(async (tx) => {
      const { site } = await this.find(tx, principal, residentId);
      editable(site);
      const [row] = await tx.update(residents).set(patch).where(eq(residents.id, residentId)).returning();
      await this.d.record(tx, principal, site, 'resident.updated', residentId, null);
      return residentView(row!);
    });
  }

  /** Removes a resident and their credentials; the main resident goes last (remove family members first). */
  async remove(principal: Principal, residentId: string): Promise<void> {
    await this.d.write(async (tx) => {
      const { resident, site } = await this.find(tx, principal, residentId);
      editable(site);
      if (resident.role === 'main') {
        const family = await tx
          .select({ n: count() })
          .from(residents)
          .where(and(eq(residents.apartmentId, resident.apartmentId), eq(residents.role, 'family')));
        if ((family[0]?.n ?? 0) > 0) throw conflict('family_members_remain', 'remove the family members first, or reset the apartment');
      }
      await tx.delete(residents).where(eq(residents.id, residentId));
      await this.d.record(tx, principal, site, 'resident.removed', residentId, null);
    });
  }
}
