import { and, asc, count, eq, ilike, inArray, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { recordWrite } from '../audit/service.js';
import type { Tx } from '../db/client.js';
import { violatedConstraint } from '../db/errors.js';
import { badRequest } from '../shared/errors.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';
import { notFoundAs, uniqueConflict, type DirectoryAccess, type SiteRow } from './access.js';
import type { CreateSiteInput, PatchSiteInput, SiteView } from './schemas.js';
import { credentials, placements, siteManagers, sites } from './tables.js';

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
  logUnopenedCalls: s.logUnopenedCalls,
  managedBy: s.managedBy ?? null,
  createdAt: s.createdAt.toISOString(),
  updatedAt: s.updatedAt.toISOString(),
});

/** The directory's sites, and the property managers given them. */
export class Sites {
  constructor(private readonly d: DirectoryAccess) {}

  async create(principal: Principal, input: CreateSiteInput): Promise<SiteView> {
    let installerId = principal.accountId;
    if (input.installerId && input.installerId !== principal.accountId) {
      if (principal.role !== 'distributor') throw badRequest('installer_not_allowed', 'only a distributor creates a site for another installer', { installerId: input.installerId });
      installerId = input.installerId;
    }
    if (principal.role === 'distributor' && !input.installerId) throw badRequest('installer_required', 'a distributor names the installer who owns the site (installerId)');
    const { installerId: _ignored, ...fields } = input;
    try {
      const row = await this.d.db.transaction(async (tx) => {
        const [created] = await tx
          .insert(sites)
          .values({ ...fields, address: fields.address ?? null, installerId })
          .returning();
        await this.d.audit(tx, principal, created!, 'site.created', created!.id, null);
        return created!;
      });
      return siteView(row);
    } catch (err) {
      if (violatedConstraint(err) === 'sites_installer_id_accounts_id_fk') throw badRequest('installer_not_found', `no installer ${installerId}`, { installerId });
      throw err;
    }
  }

  async list(principal: Principal, q: { search?: string; page: number; pageSize: number }): Promise<Page<SiteView>> {
    const where = and(
      principal.role === 'distributor' ? undefined : eq(sites.installerId, principal.accountId),
      principal.sites ? (principal.sites.length ? inArray(sites.id, principal.sites) : sql`false`) : undefined,
      q.search ? ilike(sites.name, likePattern(q.search)) : undefined,
    );
    return paginate(
      this.d.db.select().from(sites).where(where).orderBy(asc(sites.name), asc(sites.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.d.db.select({ n: count() }).from(sites).where(where),
      siteView,
      q.page,
      q.pageSize,
    );
  }

  async get(principal: Principal, siteId: string): Promise<SiteView> {
    return siteView(await this.d.site(this.d.db, principal, siteId));
  }

  /** Checks the caller may read the site (for its audit log, calls and door events, which other domains serve). */
  async readable(principal: Principal, siteId: string): Promise<void> {
    await this.d.site(this.d.db, principal, siteId);
  }

  async update(principal: Principal, siteId: string, patch: PatchSiteInput): Promise<SiteView> {
    return this.d.write(async (tx) => {
      const site = await this.d.site(tx, principal, siteId, true);
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
      await this.d.record(tx, principal, site, 'site.updated', siteId, patch);
      return siteView(row!);
    });
  }

  async remove(principal: Principal, siteId: string): Promise<void> {
    await this.d.write(async (tx) => {
      const site = await this.d.site(tx, principal, siteId, true);
      await this.d.refuseWhilePlaced(tx, eq(placements.siteId, siteId), 'site_has_devices', 'the site still has devices placed in it; move or unplace them first');
      await this.d.audit(tx, principal, site, 'site.removed', siteId, null);
      await tx.delete(sites).where(eq(sites.id, siteId));
    });
  }

  /** Gives a property manager its sites (replacing earlier ones), inside the account's own transaction. */
  async assignManager(tx: Tx, principal: Principal, accountId: string, siteIds: string[]): Promise<void> {
    const unique = [...new Set(siteIds)];
    for (const siteId of unique) {
      const site = await this.d.site(tx, principal, siteId).catch(notFoundAs('site_not_found', `no site ${siteId} of yours`, { siteId }));
      if (site.installerId !== principal.accountId) throw badRequest('site_not_found', `no site ${siteId} of yours`, { siteId });
    }
    await tx.delete(siteManagers).where(eq(siteManagers.accountId, accountId));
    await tx.insert(siteManagers).values(unique.map((siteId) => ({ siteId, accountId })));
    await recordWrite(tx, principal, { installerId: principal.accountId, action: 'property-manager.sites', subject: accountId, details: { siteIds: unique } });
  }

  /** The sites a property manager manages. */
  /** The sites of each of these property managers. */
  async managedByMany(accountIds: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!accountIds.length) return out;
    const rows = await this.d.db.select({ accountId: siteManagers.accountId, siteId: siteManagers.siteId }).from(siteManagers).where(inArray(siteManagers.accountId, accountIds)).orderBy(asc(siteManagers.siteId));
    for (const r of rows) out.set(r.accountId, [...(out.get(r.accountId) ?? []), r.siteId]);
    return out;
  }

  async managedBy(accountId: string): Promise<string[]> {
    const rows = await this.d.db.select({ siteId: siteManagers.siteId }).from(siteManagers).where(eq(siteManagers.accountId, accountId));
    return rows.map((r) => r.siteId);
  }
}
