import { and, asc, count, eq, ilike, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Principal } from '../accounts/service.js';
import { recordWrite } from '../audit/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import { violatedConstraint } from '../db/errors.js';
import type { DevicePlacements, DevicePlacementView, PlacementFilter } from '../devices/placement.js';
import { badRequest, conflict, DomainError, notFound } from '../shared/errors.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';
import type {
  BuildingView,
  CreateBuildingInput,
  CreateCredentialInput,
  CreateResidentInput,
  CreateSiteInput,
  CredentialView,
  PatchBuildingInput,
  PatchResidentInput,
  PatchSiteInput,
  ResidentView,
  SiteView,
} from './schemas.js';
import { deviceFacts } from '../devices/queries.js';
import type { SheetRow } from '../shared/csv.js';
import { apartments, buildings, credentials, directoryChanges, placements, residents, siteManagers, sites, type ContactPreference } from './tables.js';
import { Apartments, type ApartmentRow } from './apartments.js';
import { parseTemplate, TEMPLATE_COLUMNS, templateRow, type InvalidCell } from './template.js';

type SiteRow = typeof sites.$inferSelect;
/** A site as a write's audit row names it: which site, whose. */
type SiteRef = Pick<SiteRow, 'id' | 'installerId'>;
type BuildingRow = typeof buildings.$inferSelect;
type ResidentRow = typeof residents.$inferSelect;
type CredentialRow = typeof credentials.$inferSelect;

const siteView = (s: SiteRow): SiteView => ({
  id: s.id,
  installerId: s.installerId,
  kind: s.kind,
  name: s.name,
  address: s.address,
  timeZone: s.timeZone,
  contactDisplay: s.contactDisplay,
  pinMode: s.pinMode,
  communityCalls: s.communityCalls,
  createdAt: s.createdAt.toISOString(),
  updatedAt: s.updatedAt.toISOString(),
});
const buildingView = (b: BuildingRow): BuildingView => ({ id: b.id, siteId: b.siteId, name: b.name, groundFloor: b.groundFloor, startFloor: b.startFloor, createdAt: b.createdAt.toISOString() });
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
const credentialView = (c: CredentialRow): CredentialView => ({
  id: c.id,
  residentId: c.residentId,
  apartmentId: c.apartmentId,
  kind: c.kind,
  value: c.value,
  validFrom: c.validFrom?.toISOString() ?? null,
  validUntil: c.validUntil?.toISOString() ?? null,
  createdAt: c.createdAt.toISOString(),
});

/** What a PIN or card must be unique in (see the `credentials` table). */
const scopeOf = (kind: 'pin' | 'card', pinMode: 'pin' | 'apt-pin', apartmentId: string) => (kind === 'pin' && pinMode === 'apt-pin' ? apartmentId : 'site');

// Device types an apartment may hold: its indoor monitors and a single-tenant door phone (a villa).
const APARTMENT_TYPES = new Set(['1', '2']);

/** Inserts rows in chunks (PostgreSQL takes at most 65,535 parameters per statement); answers them as stored. */
async function inChunks<I, O>(rows: I[], insert: (chunk: I[]) => Promise<O[]>): Promise<O[]> {
  const stored: O[] = [];
  for (let i = 0; i < rows.length; i += 1000) stored.push(...(await insert(rows.slice(i, i + 1000))));
  return stored;
}

/**
 * A record named inside a request's body (a placement's building, a manager's site) that the caller cannot
 * see makes the request bad (400), rather than the resource of its URL missing (404).
 */
const notFoundAs = (code: string, message: string, details: unknown) => (err: unknown): never => {
  if (err instanceof DomainError && err.kind === 'not_found') throw badRequest(code, message, details);
  throw err;
};

/** Turns a unique-index violation into the conflict an installer understands; rethrows anything else. */
function uniqueConflict(err: unknown, messages: Record<string, [string, string]>): never {
  const known = messages[violatedConstraint(err) ?? ''];
  if (known) throw conflict(known[0], known[1]);
  throw err;
}

/**
 * The directory: sites, buildings, apartments, residents and their PIN codes and cards, and where devices
 * are installed. Every write also records which site changed, in the same transaction, and pokes the
 * follower, which renders the site's devices again and provisions those whose documents changed.
 */
/** The part of a site one call's routing needs (DirectoryService.callDirectory). */
export interface CallDirectory {
  site: { id: string; installerId: string; communityCalls: boolean };
  apartments: { id: string; buildingId: string; number: string; contactPreference: ContactPreference }[];
  placements: { mac: string; buildingId: string | null; apartmentId: string | null }[];
}

export class DirectoryService implements DevicePlacements {
  private pokeFollower: () => void = () => {};
  /** Apartments and their reset (src/directory/apartments.ts). */
  readonly apartments: Apartments;

  constructor(private readonly db: Db) {
    this.apartments = new Apartments({
      db,
      building: (q, principal, buildingId) => this.building(q, principal, buildingId),
      owns: (principal, site) => this.owns(principal, site),
      record: (tx, principal, site, action, subject, details) => this.record(tx, principal, site, action, subject, details),
      write: (work) => this.write(work),
      refuseWhilePlaced: (tx, where, code, message) => this.refuseWhilePlaced(tx, where, code, message),
    });
  }

  /** The follower to wake once a change committed. */
  onChange(poke: () => void): void {
    this.pokeFollower = poke;
  }

  committed(): void {
    this.pokeFollower();
  }

  private async changed(tx: Queryable, siteId: string, principal: Principal | null): Promise<void> {
    await tx.insert(directoryChanges).values({ siteId, accountId: principal?.actorId ?? null });
  }

  /** A write of an account: the site is marked for rendering and the write audited with who made it, in its transaction. */
  private async record(tx: Queryable, principal: Principal, site: SiteRef, action: string, subject: string | null, details: unknown): Promise<void> {
    await this.changed(tx, site.id, principal);
    await this.audit(tx, principal, site, action, subject, details);
  }

  private async audit(tx: Queryable, principal: Principal, site: SiteRef, action: string, subject: string | null, details: unknown): Promise<void> {
    await recordWrite(tx, principal, { installerId: site.installerId, siteId: site.id, action, subject, details });
  }

  /** Runs a write and its change record in one transaction, then wakes the follower. */
  private async write<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
    const result = await this.db.transaction(work);
    this.pokeFollower();
    return result;
  }

  /** Whether the caller may see the site: its installer (or a sub-installer), a distributor, or one of its property managers. */
  private owns(principal: Principal, site: { id: string; installerId: string }): boolean {
    if (principal.role === 'distributor') return true;
    return principal.accountId === site.installerId && (principal.sites === null || principal.sites.includes(site.id));
  }

  // ---- sites

  private async site(q: Queryable, principal: Principal, siteId: string, lock = false): Promise<SiteRow> {
    const query = q.select().from(sites).where(eq(sites.id, siteId)).limit(1);
    const rows = lock ? await query.for('update') : await query;
    const site = rows[0];
    if (!site || !this.owns(principal, site)) throw notFound('site', { siteId });
    return site;
  }

  async createSite(principal: Principal, input: CreateSiteInput): Promise<SiteView> {
    let installerId = principal.accountId;
    if (input.installerId && input.installerId !== principal.accountId) {
      if (principal.role !== 'distributor') throw badRequest('installer_not_allowed', 'only a distributor creates a site for another installer', { installerId: input.installerId });
      installerId = input.installerId;
    }
    if (principal.role === 'distributor' && !input.installerId) throw badRequest('installer_required', 'a distributor names the installer who owns the site (installerId)');
    const { installerId: _ignored, ...fields } = input;
    try {
      const row = await this.db.transaction(async (tx) => {
        const [created] = await tx
          .insert(sites)
          .values({ ...fields, address: fields.address ?? null, installerId })
          .returning();
        await this.audit(tx, principal, created!, 'site.created', created!.id, null);
        return created!;
      });
      return siteView(row);
    } catch (err) {
      if (violatedConstraint(err) === 'sites_installer_id_accounts_id_fk') throw badRequest('installer_not_found', `no installer ${installerId}`, { installerId });
      throw err;
    }
  }

  async listSites(principal: Principal, q: { search?: string; page: number; pageSize: number }): Promise<Page<SiteView>> {
    const where = and(
      principal.role === 'distributor' ? undefined : eq(sites.installerId, principal.accountId),
      principal.sites ? (principal.sites.length ? inArray(sites.id, principal.sites) : sql`false`) : undefined,
      q.search ? ilike(sites.name, likePattern(q.search)) : undefined,
    );
    return paginate(
      this.db.select().from(sites).where(where).orderBy(asc(sites.name), asc(sites.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(sites).where(where),
      siteView,
      q.page,
      q.pageSize,
    );
  }

  async getSite(principal: Principal, siteId: string): Promise<SiteView> {
    return siteView(await this.site(this.db, principal, siteId));
  }

  async updateSite(principal: Principal, siteId: string, patch: PatchSiteInput): Promise<SiteView> {
    return this.write(async (tx) => {
      const site = await this.site(tx, principal, siteId, true);
      const [row] = await tx
        .update(sites)
        .set({ ...patch, updatedAt: new Date() })
        .where(eq(sites.id, siteId))
        .returning();
      if (patch.pinMode && patch.pinMode !== site.pinMode) {
        // PINs are unique per site in `pin` mode and per apartment in `apt-pin` mode: re-scope them.
        try {
          await tx
            .update(credentials)
            .set({ scope: patch.pinMode === 'apt-pin' ? sql`${credentials.apartmentId}::text` : 'site' })
            .where(and(eq(credentials.siteId, siteId), eq(credentials.kind, 'pin')));
        } catch (err) {
          uniqueConflict(err, { credentials_unique_idx: ['pin_taken', 'two apartments share a PIN: in pin mode every PIN must be unique in the site; change one first'] });
        }
      }
      await this.record(tx, principal, site, 'site.updated', siteId, patch);
      return siteView(row!);
    });
  }

  async removeSite(principal: Principal, siteId: string): Promise<void> {
    await this.write(async (tx) => {
      const site = await this.site(tx, principal, siteId, true);
      await this.refuseWhilePlaced(tx, eq(placements.siteId, siteId), 'site_has_devices', 'the site still has devices placed in it; move or unplace them first');
      await this.audit(tx, principal, site, 'site.removed', siteId, null);
      await tx.delete(sites).where(eq(sites.id, siteId));
    });
  }

  private async refuseWhilePlaced(tx: Queryable, where: SQL, code: string, message: string): Promise<void> {
    const placed = await tx.select({ mac: placements.mac }).from(placements).where(where).limit(20);
    if (placed.length) throw conflict(code, message, { macs: placed.map((p) => p.mac) });
  }

  // ---- property managers and the audit log

  /** Gives a property manager its sites (replacing earlier ones), inside the account's own transaction. */
  async assignManager(tx: Tx, principal: Principal, accountId: string, siteIds: string[]): Promise<void> {
    const unique = [...new Set(siteIds)];
    for (const siteId of unique) {
      const site = await this.site(tx, principal, siteId).catch(notFoundAs('site_not_found', `no site ${siteId} of yours`, { siteId }));
      if (site.installerId !== principal.accountId) throw badRequest('site_not_found', `no site ${siteId} of yours`, { siteId });
    }
    await tx.delete(siteManagers).where(eq(siteManagers.accountId, accountId));
    await tx.insert(siteManagers).values(unique.map((siteId) => ({ siteId, accountId })));
    await recordWrite(tx, principal, { installerId: principal.accountId, action: 'property-manager.sites', subject: accountId, details: { siteIds: unique } });
  }

  /** The sites a property manager manages. */
  async managedSites(accountId: string): Promise<string[]> {
    const rows = await this.db.select({ siteId: siteManagers.siteId }).from(siteManagers).where(eq(siteManagers.accountId, accountId));
    return rows.map((r) => r.siteId);
  }

  /** Checks the caller may read the site (for its audit log, which the audit domain serves). */
  async readableSite(principal: Principal, siteId: string): Promise<void> {
    await this.site(this.db, principal, siteId);
  }

  // ---- buildings

  private async building(q: Queryable, principal: Principal, buildingId: string): Promise<{ building: BuildingRow; site: SiteRow }> {
    const rows = await q.select({ building: buildings, site: sites }).from(buildings).innerJoin(sites, eq(sites.id, buildings.siteId)).where(eq(buildings.id, buildingId)).limit(1);
    const row = rows[0];
    if (!row || !this.owns(principal, row.site)) throw notFound('building', { buildingId });
    return row;
  }

  private static readonly buildingConflicts: Record<string, [string, string]> = {
    buildings_site_name_idx: ['building_name_taken', 'the site already has a building of that name'],
  };

  async createBuilding(principal: Principal, siteId: string, input: CreateBuildingInput): Promise<BuildingView> {
    return this.write(async (tx) => {
      const site = await this.site(tx, principal, siteId);
      try {
        const [row] = await tx.insert(buildings).values({ siteId, ...input }).returning();
        await this.record(tx, principal, site, 'building.created', row!.id, null);
        return buildingView(row!);
      } catch (err) {
        uniqueConflict(err, DirectoryService.buildingConflicts);
      }
    });
  }

  async listBuildings(principal: Principal, siteId: string, q: { page: number; pageSize: number }): Promise<Page<BuildingView>> {
    await this.site(this.db, principal, siteId);
    const where = eq(buildings.siteId, siteId);
    return paginate(
      this.db.select().from(buildings).where(where).orderBy(asc(buildings.name), asc(buildings.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(buildings).where(where),
      buildingView,
      q.page,
      q.pageSize,
    );
  }

  async getBuilding(principal: Principal, buildingId: string): Promise<BuildingView> {
    return buildingView((await this.building(this.db, principal, buildingId)).building);
  }

  async updateBuilding(principal: Principal, buildingId: string, patch: PatchBuildingInput): Promise<BuildingView> {
    return this.write(async (tx) => {
      const { site } = await this.building(tx, principal, buildingId);
      try {
        const [row] = await tx.update(buildings).set(patch).where(eq(buildings.id, buildingId)).returning();
        await this.record(tx, principal, site, 'building.updated', buildingId, patch);
        return buildingView(row!);
      } catch (err) {
        uniqueConflict(err, DirectoryService.buildingConflicts);
      }
    });
  }

  async removeBuilding(principal: Principal, buildingId: string): Promise<void> {
    await this.write(async (tx) => {
      const { site } = await this.building(tx, principal, buildingId);
      const inside = tx.select({ id: apartments.id }).from(apartments).where(eq(apartments.buildingId, buildingId));
      await this.refuseWhilePlaced(tx, sql`${placements.buildingId} = ${buildingId} OR ${placements.apartmentId} IN ${inside}`, 'building_has_devices', 'the building still has devices placed in it or in its apartments; move or unplace them first');
      await tx.delete(buildings).where(eq(buildings.id, buildingId));
      await this.record(tx, principal, site, 'building.removed', buildingId, null);
    });
  }

  // ---- residents

  private async resident(q: Queryable, principal: Principal, residentId: string): Promise<{ resident: ResidentRow; site: SiteRow }> {
    const rows = await q.select({ resident: residents, site: sites }).from(residents).innerJoin(sites, eq(sites.id, residents.siteId)).where(eq(residents.id, residentId)).limit(1);
    const row = rows[0];
    if (!row || !this.owns(principal, row.site)) throw notFound('resident', { residentId });
    return row;
  }

  async createResident(principal: Principal, apartmentId: string, input: CreateResidentInput): Promise<ResidentView> {
    return this.write(async (tx) => {
      const { apartment, site } = await this.apartments.find(tx, principal, apartmentId);
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
      await this.record(tx, principal, site, 'resident.created', row!.id, null);
      return residentView(row!);
    });
  }

  async listResidents(principal: Principal, apartmentId: string, q: { page: number; pageSize: number }): Promise<Page<ResidentView>> {
    await this.apartments.find(this.db, principal, apartmentId);
    const where = eq(residents.apartmentId, apartmentId);
    return paginate(
      this.db
        .select()
        .from(residents)
        .where(where)
        .orderBy(sql`${residents.role} = 'main' DESC`, asc(residents.createdAt), asc(residents.id))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(residents).where(where),
      residentView,
      q.page,
      q.pageSize,
    );
  }

  async getResident(principal: Principal, residentId: string): Promise<ResidentView> {
    return residentView((await this.resident(this.db, principal, residentId)).resident);
  }

  async updateResident(principal: Principal, residentId: string, patch: PatchResidentInput): Promise<ResidentView> {
    return this.write(async (tx) => {
      const { site } = await this.resident(tx, principal, residentId);
      const [row] = await tx.update(residents).set(patch).where(eq(residents.id, residentId)).returning();
      await this.record(tx, principal, site, 'resident.updated', residentId, null);
      return residentView(row!);
    });
  }

  /** Removes a resident and their credentials; the main resident goes last (remove family members first). */
  async removeResident(principal: Principal, residentId: string): Promise<void> {
    await this.write(async (tx) => {
      const { resident, site } = await this.resident(tx, principal, residentId);
      if (resident.role === 'main') {
        const family = await tx
          .select({ n: count() })
          .from(residents)
          .where(and(eq(residents.apartmentId, resident.apartmentId), eq(residents.role, 'family')));
        if ((family[0]?.n ?? 0) > 0) throw conflict('family_members_remain', 'remove the family members first, or reset the apartment');
      }
      await tx.delete(residents).where(eq(residents.id, residentId));
      await this.record(tx, principal, site, 'resident.removed', residentId, null);
    });
  }

  // ---- credentials

  async createCredential(principal: Principal, residentId: string, input: CreateCredentialInput): Promise<CredentialView> {
    return this.write(async (tx) => {
      const { resident, site } = await this.resident(tx, principal, residentId);
      try {
        const [row] = await tx
          .insert(credentials)
          .values({
            siteId: site.id,
            apartmentId: resident.apartmentId,
            residentId,
            kind: input.kind,
            value: input.value,
            scope: scopeOf(input.kind, site.pinMode, resident.apartmentId),
            validFrom: input.validFrom ? new Date(input.validFrom) : null,
            validUntil: input.validUntil ? new Date(input.validUntil) : null,
          })
          .returning();
        await this.record(tx, principal, site, 'credential.created', row!.id, { kind: input.kind });
        return credentialView(row!);
      } catch (err) {
        const where = input.kind === 'card' ? 'site' : site.pinMode === 'apt-pin' ? 'apartment' : 'site';
        uniqueConflict(err, { credentials_unique_idx: [`${input.kind}_taken`, `that ${input.kind === 'pin' ? 'PIN' : 'card'} is already in use in this ${where}`] });
      }
    });
  }

  async listCredentials(principal: Principal, residentId: string): Promise<CredentialView[]> {
    await this.resident(this.db, principal, residentId);
    const rows = await this.db.select().from(credentials).where(eq(credentials.residentId, residentId)).orderBy(asc(credentials.createdAt), asc(credentials.id));
    return rows.map(credentialView);
  }

  /** Revokes a PIN or card: it leaves the lists of the devices that accepted it. */
  async removeCredential(principal: Principal, credentialId: string): Promise<void> {
    await this.write(async (tx) => {
      const rows = await tx.select({ credential: credentials, site: sites }).from(credentials).innerJoin(sites, eq(sites.id, credentials.siteId)).where(eq(credentials.id, credentialId)).limit(1);
      const row = rows[0];
      if (!row || !this.owns(principal, row.site)) throw notFound('credential', { credentialId });
      await tx.delete(credentials).where(eq(credentials.id, credentialId));
      await this.record(tx, principal, row.site, 'credential.revoked', credentialId, { kind: row.credential.kind });
    });
  }

  // ---- the resident template

  /**
   * Imports the portal's resident template into a site in one transaction: buildings and apartments are
   * made as named, residents added (the first of an apartment its main resident), indoor monitors and
   * single-tenant door phones placed in their apartment. Rows already in the directory (same apartment,
   * same resident name) are skipped, so an export imports back without change. Any faulty row refuses the
   * whole file (400 `template_invalid`, every fault with line, column and reason) and writes nothing.
   */
  async importTemplate(principal: Principal, siteId: string, sheet: SheetRow[]) {
    const parsed = parseTemplate(sheet);
    if (!parsed.rows.length && !parsed.invalid.length) throw badRequest('template_empty', 'the file has a header but no rows');
    const refuse = (invalid: InvalidCell[]) => {
      throw badRequest('template_invalid', `${invalid.length} fault(s) in the file; nothing was imported`, { invalid: invalid.slice(0, 1000), ignoredColumns: parsed.ignoredColumns });
    };
    if (parsed.invalid.length) refuse(parsed.invalid);
    const created = { buildings: 0, apartments: 0, residents: 0, placements: 0 };
    let updated = 0;
    let skipped = 0;
    await this.write(async (tx) => {
      // One import at a time per site: the lookups below stay true until commit.
      const site = await this.site(tx, principal, siteId, true);
      const buildingIds = new Map((await tx.select({ id: buildings.id, name: buildings.name }).from(buildings).where(eq(buildings.siteId, siteId))).map((b) => [b.name, b.id]));
      const existingApartments = await tx.select().from(apartments).where(eq(apartments.siteId, siteId));
      const apartmentOf = new Map(existingApartments.map((a) => [`${a.buildingId}/${a.number}`, a]));
      const residentRows = await tx.select({ apartmentId: residents.apartmentId, role: residents.role, firstName: residents.firstName, lastName: residents.lastName }).from(residents).where(eq(residents.siteId, siteId));
      const nameKey = (apartmentId: string, first: string, last: string) => `${apartmentId}/${first.toLowerCase()}/${last.toLowerCase()}`;
      const residentNames = new Set(residentRows.map((r) => nameKey(r.apartmentId, r.firstName, r.lastName)));
      const withMain = new Set(residentRows.filter((r) => r.role === 'main').map((r) => r.apartmentId));
      const macs = [...new Set(parsed.rows.flatMap((r) => r.devices.map((d) => d.mac)))];
      const facts = new Map((await deviceFacts(tx, macs)).map((d) => [d.mac, d]));
      const placedBefore = await this.of(macs, tx);
      const placedNow = new Map(placedBefore);

      const deviceFaults: InvalidCell[] = [];
      for (const row of parsed.rows) {
        for (const d of row.devices) {
          const device = facts.get(d.mac);
          const value = `${d.name},${d.type},${d.mac}`;
          if (!device || device.installerId !== site.installerId) deviceFaults.push({ line: row.line, column: 'Device', value, reason: "no device with this MAC among the site installer's devices; add the device first" });
          else if (device.type !== d.type) deviceFaults.push({ line: row.line, column: 'Device', value, reason: `the device with this MAC has type ${device.type}, not ${d.type}` });
          else if (!APARTMENT_TYPES.has(device.type)) deviceFaults.push({ line: row.line, column: 'Device', value, reason: 'only indoor monitors (2) and single-tenant door phones (1) belong to an apartment' });
        }
      }
      if (deviceFaults.length) refuse(deviceFaults);

      // Everything new is written in bulk, in file order: buildings, apartments, residents, placements.
      const newBuildings = [...new Set(parsed.rows.map((r) => r.building))].filter((name) => !buildingIds.has(name));
      for (const b of await inChunks(newBuildings, (c) => tx.insert(buildings).values(c.map((name) => ({ siteId, name }))).returning())) buildingIds.set(b.name, b.id);
      created.buildings = newBuildings.length;

      const rowApartment = (row: (typeof parsed.rows)[number]) => `${buildingIds.get(row.building)}/${row.apartment.number}`;
      const pendingApartments = new Map<string, typeof apartments.$inferInsert>();
      const touched = new Set<number>();
      for (const row of parsed.rows) {
        const key = rowApartment(row);
        const existing = apartmentOf.get(key);
        if (!existing) {
          const pending = pendingApartments.get(key);
          if (!pending) pendingApartments.set(key, { siteId, buildingId: buildingIds.get(row.building)!, number: row.apartment.number, name: row.apartment.name, webRelayId: row.apartment.webRelayId ?? 0 });
          else if (row.apartment.name !== null) pending.name = row.apartment.name;
          touched.add(row.line);
        } else if ((row.apartment.name !== null && row.apartment.name !== existing.name) || (row.apartment.webRelayId !== null && row.apartment.webRelayId !== existing.webRelayId)) {
          const set = { ...(row.apartment.name !== null ? { name: row.apartment.name } : {}), ...(row.apartment.webRelayId !== null ? { webRelayId: row.apartment.webRelayId } : {}) };
          const [changedApartment] = await tx.update(apartments).set(set).where(eq(apartments.id, existing.id)).returning();
          apartmentOf.set(key, changedApartment!);
          updated++;
          touched.add(row.line);
        }
      }
      for (const a of await inChunks([...pendingApartments.values()], (c) => tx.insert(apartments).values(c).returning())) apartmentOf.set(`${a.buildingId}/${a.number}`, a);
      created.apartments = pendingApartments.size;

      // created_at carries the file's order (one transaction has one now()): main resident first, then family.
      const clock = Date.now();
      const newResidents: (typeof residents.$inferInsert)[] = [];
      for (const row of parsed.rows) {
        const apartmentId = apartmentOf.get(rowApartment(row))!.id;
        if (!row.resident || residentNames.has(nameKey(apartmentId, row.resident.firstName, row.resident.lastName))) continue;
        newResidents.push({ siteId, apartmentId, role: withMain.has(apartmentId) ? 'family' : 'main', ...row.resident, accessibleFloors: row.accessibleFloors, createdAt: new Date(clock + newResidents.length) });
        withMain.add(apartmentId);
        residentNames.add(nameKey(apartmentId, row.resident.firstName, row.resident.lastName));
        touched.add(row.line);
      }
      await inChunks(newResidents, (c) => tx.insert(residents).values(c).returning({ id: residents.id }));
      created.residents = newResidents.length;

      const moves = new Map<string, typeof placements.$inferInsert>();
      for (const row of parsed.rows) {
        const apartment = apartmentOf.get(rowApartment(row))!;
        for (const d of row.devices) {
          const at = placedNow.get(d.mac);
          if (at?.siteId === siteId && at.apartmentId === apartment.id) continue;
          moves.set(d.mac, { mac: d.mac, siteId, buildingId: apartment.buildingId, apartmentId: apartment.id });
          placedNow.set(d.mac, { siteId, buildingId: apartment.buildingId, apartmentId: apartment.id });
          touched.add(row.line);
        }
      }
      // Devices checked above (the site installer's own, of a type an apartment holds); a moved one's old site re-renders too.
      for (const other of new Set([...moves.keys()].map((mac) => placedBefore.get(mac)?.siteId).filter((id): id is string => !!id && id !== siteId))) await this.changed(tx, other, principal);
      await inChunks([...moves.values()], (c) =>
        tx
          .insert(placements)
          .values(c)
          .onConflictDoUpdate({ target: placements.mac, set: { siteId: sql`excluded.site_id`, buildingId: sql`excluded.building_id`, apartmentId: sql`excluded.apartment_id` } })
          .returning({ mac: placements.mac }),
      );
      created.placements = moves.size;
      skipped = parsed.rows.filter((r) => !touched.has(r.line)).length;
      await this.record(tx, principal, site, 'template.imported', null, { created, updated });
    });
    return { created, updated, skipped, invalid: [] as InvalidCell[], ignoredColumns: parsed.ignoredColumns };
  }

  /** The site's directory in the template's layout (one row per resident, or per apartment without residents). */
  async exportTemplate(principal: Principal, siteId: string): Promise<string[][]> {
    await this.site(this.db, principal, siteId);
    const [buildingRows, apartmentRows, residentRows, placementRows] = await Promise.all([
      this.db.select().from(buildings).where(eq(buildings.siteId, siteId)),
      this.db.select().from(apartments).where(eq(apartments.siteId, siteId)),
      this.db.select().from(residents).where(eq(residents.siteId, siteId)),
      this.db.select().from(placements).where(eq(placements.siteId, siteId)),
    ]);
    const buildingName = new Map(buildingRows.map((b) => [b.id, b.name]));
    const facts = new Map((await deviceFacts(this.db, placementRows.filter((p) => p.apartmentId).map((p) => p.mac))).map((d) => [d.mac, d]));
    const devicesOf = (apartmentId: string) =>
      placementRows
        .filter((p) => p.apartmentId === apartmentId && facts.has(p.mac))
        .map((p) => facts.get(p.mac)!)
        .sort((a, b) => (a.mac < b.mac ? -1 : 1))
        .map((d) => ({ name: d.name, type: d.type, mac: d.mac }));
    const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    const ordered = [...apartmentRows].sort((a, b) => cmp(buildingName.get(a.buildingId)!, buildingName.get(b.buildingId)!) || cmp(a.number, b.number));
    const rows: string[][] = [[...TEMPLATE_COLUMNS]];
    for (const a of ordered) {
      const people = residentRows
        .filter((r) => r.apartmentId === a.id)
        .sort((x, y) => (x.role === y.role ? x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : 1) : x.role === 'main' ? -1 : 1));
      const base = { building: buildingName.get(a.buildingId)!, apartment: a.number, apartmentName: a.name, webRelayId: a.webRelayId };
      if (!people.length) rows.push(templateRow({ ...base, accessibleFloors: [], devices: devicesOf(a.id), resident: null }));
      people.forEach((p, i) => rows.push(templateRow({ ...base, accessibleFloors: p.accessibleFloors, devices: i === 0 ? devicesOf(a.id) : [], resident: p })));
    }
    return rows;
  }

  // ---- for the calls domain (app stations)

  /**
   * The apartment and its site, when the caller may see them (404 otherwise), read in `q`. With no
   * principal, whoever's: work done on behalf of a one-time code its issuer made. With `share`, the
   * apartment is not reset before `q`'s transaction ends; with `reset`, it is locked as a reset locks it.
   */
  async apartmentFor(q: Queryable, principal: Principal | null, apartmentId: string, lock?: 'share' | 'reset'): Promise<{ apartment: ApartmentRow; site: SiteRow }> {
    return this.apartments.find(q, principal, apartmentId, lock);
  }

  /** The site when the caller may see it (404 otherwise), read in `q`. */
  async siteFor(q: Queryable, principal: Principal, siteId: string): Promise<SiteRow> {
    return this.site(q, principal, siteId);
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

  // ---- placement (DevicePlacements)

  async place(tx: Tx, principal: Principal, device: { mac: string; type: string; installerId: string }, target: DevicePlacementView | null): Promise<void> {
    const before = await tx.select().from(placements).where(eq(placements.mac, device.mac)).limit(1).for('update');
    // A device is only ever placed in its own installer's sites: the one it leaves is its installer's too.
    if (before[0]) await this.record(tx, principal, { id: before[0].siteId, installerId: device.installerId }, 'device.moved-out', device.mac, null);
    if (!target) {
      await tx.delete(placements).where(eq(placements.mac, device.mac));
      return;
    }
    const site = await this.site(tx, principal, target.siteId);
    if (site.installerId !== device.installerId) throw badRequest('placement_invalid', "the site does not belong to the device's installer", { siteId: target.siteId });
    let buildingId = target.buildingId;
    if (target.apartmentId) {
      const { apartment } = await this.apartments.find(tx, principal, target.apartmentId).catch(notFoundAs('placement_invalid', 'no such apartment', { apartmentId: target.apartmentId }));
      if (apartment.siteId !== site.id || (buildingId && apartment.buildingId !== buildingId)) throw badRequest('placement_invalid', 'the apartment is not in that site and building', { apartmentId: target.apartmentId });
      if (!APARTMENT_TYPES.has(device.type)) throw badRequest('placement_invalid', 'only indoor monitors and single-tenant door phones are placed in an apartment', { type: device.type });
      buildingId = apartment.buildingId;
    } else if (buildingId) {
      const { building } = await this.building(tx, principal, buildingId).catch(notFoundAs('placement_invalid', 'no such building', { buildingId }));
      if (building.siteId !== site.id) throw badRequest('placement_invalid', 'the building is not in that site', { buildingId });
    }
    const values = { siteId: site.id, buildingId: buildingId ?? null, apartmentId: target.apartmentId ?? null };
    await tx
      .insert(placements)
      .values({ mac: device.mac, ...values })
      .onConflictDoUpdate({ target: placements.mac, set: values });
    await this.record(tx, principal, site, 'device.placed', device.mac, values);
  }

  async deviceChanged(tx: Tx, device: { mac: string; type: string }): Promise<void> {
    const rows = await tx.select().from(placements).where(eq(placements.mac, device.mac)).limit(1);
    const placement = rows[0];
    if (!placement) return;
    if (placement.apartmentId && !APARTMENT_TYPES.has(device.type)) {
      throw badRequest('placement_invalid', 'the device is placed in an apartment, where only indoor monitors and single-tenant door phones go; move it first', { type: device.type });
    }
    await this.changed(tx, placement.siteId, null);
  }

  async of(macs: string[], q: Queryable = this.db): Promise<Map<string, DevicePlacementView>> {
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
    const siteRows = await this.db.select({ id: sites.id, installerId: sites.installerId, communityCalls: sites.communityCalls }).from(sites).where(eq(sites.id, siteId)).limit(1);
    if (!siteRows[0]) return null;
    const which = [focus.apartmentNumber !== null ? eq(apartments.number, focus.apartmentNumber) : undefined, focus.apartmentIds.length ? inArray(apartments.id, focus.apartmentIds) : undefined].filter((c) => c !== undefined);
    const apartmentRows = which.length
      ? await this.db
          .select({ id: apartments.id, buildingId: apartments.buildingId, number: apartments.number, contactPreference: apartments.contactPreference })
          .from(apartments)
          .where(and(eq(apartments.siteId, siteId), or(...which)))
      : [];
    const placementRows = apartmentRows.length
      ? await this.db
          .select({ mac: placements.mac, buildingId: placements.buildingId, apartmentId: placements.apartmentId })
          .from(placements)
          .where(and(eq(placements.siteId, siteId), inArray(placements.apartmentId, apartmentRows.map((a) => a.id))))
      : [];
    return { site: siteRows[0], apartments: apartmentRows, placements: placementRows };
  }

  /** The site and building an apartment belongs to (null: no such apartment). */
  async apartmentPlace(apartmentId: string): Promise<{ siteId: string; buildingId: string } | null> {
    const rows = await this.db.select({ siteId: apartments.siteId, buildingId: apartments.buildingId }).from(apartments).where(eq(apartments.id, apartmentId)).limit(1);
    return rows[0] ?? null;
  }

  filter(mac: AnyPgColumn, f: PlacementFilter): SQL {
    const conditions = [
      f.siteId ? eq(placements.siteId, f.siteId) : undefined,
      f.siteIds ? (f.siteIds.length ? inArray(placements.siteId, f.siteIds) : sql`false`) : undefined,
      f.buildingId ? eq(placements.buildingId, f.buildingId) : undefined,
      f.apartmentId ? eq(placements.apartmentId, f.apartmentId) : undefined,
    ];
    return inArray(mac, this.db.select({ mac: placements.mac }).from(placements).where(and(...conditions)));
  }

  async deviceRemoved(tx: Tx, mac: string): Promise<void> {
    const rows = await tx.select({ siteId: placements.siteId }).from(placements).where(eq(placements.mac, mac)).limit(1);
    if (rows[0]) await this.changed(tx, rows[0].siteId, null);
  }
}

