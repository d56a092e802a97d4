import { eq, type SQL } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { recordWrite } from '../audit/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import { violatedConstraint } from '../db/errors.js';
import { badRequest, conflict, DomainError, notFound } from '../shared/errors.js';
import { buildings, directoryChanges, placements, sites } from './tables.js';

export type SiteRow = typeof sites.$inferSelect;
/** A site as a write's audit row names it: which site, whose. */
export type SiteRef = Pick<SiteRow, 'id' | 'installerId'>;
export type BuildingRow = typeof buildings.$inferSelect;

/** Inserts rows in chunks (PostgreSQL takes at most 65,535 parameters per statement); answers them as stored. */
export async function inChunks<I, O>(rows: I[], insert: (chunk: I[]) => Promise<O[]>): Promise<O[]> {
  const stored: O[] = [];
  for (let i = 0; i < rows.length; i += 1000) stored.push(...(await insert(rows.slice(i, i + 1000))));
  return stored;
}

/**
 * A record named inside a request's body (a placement's building, a manager's site) that the caller cannot
 * see makes the request bad (400), rather than the resource of its URL missing (404).
 */
export const notFoundAs = (code: string, message: string, details: unknown) => (err: unknown): never => {
  if (err instanceof DomainError && err.kind === 'not_found') throw badRequest(code, message, details);
  throw err;
};

/** Refuses a write to an IXG-managed site's directory (409 `ixg_managed`): its IXG system describes it. */
export function editable(site: { id: string; managedBy: string | null }): void {
  if (site.managedBy === 'ixg') {
    throw conflict('ixg_managed', 'this site mirrors its IXG system: change its buildings, units and stations in the IXG Support Tool and upload them again', { siteId: site.id });
  }
}

/** Turns a unique-index violation into the conflict an installer understands; rethrows anything else. */
export function uniqueConflict(err: unknown, messages: Record<string, [string, string]>): never {
  const known = messages[violatedConstraint(err) ?? ''];
  if (known) throw conflict(known[0], known[1]);
  throw err;
}

/**
 * What every part of the directory shares: who may see a site, the lookups that check it, and audited
 * writes. Every write also records which site changed, in the same transaction, and pokes the follower,
 * which renders the site's devices again and provisions those whose documents changed.
 */
export class DirectoryAccess {
  private pokeFollower: () => void = () => {};

  constructor(readonly db: Db) {}

  /** The follower to wake once a change committed. */
  onChange(poke: () => void): void {
    this.pokeFollower = poke;
  }

  committed(): void {
    this.pokeFollower();
  }

  /** Marks the site for rendering, in `tx`. */
  async changed(tx: Queryable, siteId: string, principal: Principal | null): Promise<void> {
    await tx.insert(directoryChanges).values({ siteId, accountId: principal?.actorId ?? null });
  }

  /** A write of an account: the site is marked for rendering and the write audited with who made it, in its transaction. */
  async record(tx: Queryable, principal: Principal, site: SiteRef, action: string, subject: string | null, details: unknown): Promise<void> {
    await this.changed(tx, site.id, principal);
    await this.audit(tx, principal, site, action, subject, details);
  }

  async audit(tx: Queryable, principal: Principal, site: SiteRef, action: string, subject: string | null, details: unknown): Promise<void> {
    await recordWrite(tx, principal, { installerId: site.installerId, siteId: site.id, action, subject, details });
  }

  /** Runs a write and its change record in one transaction, then wakes the follower. */
  async write<T>(work: (tx: Tx) => Promise<T>): Promise<T> {
    const result = await this.db.transaction(work);
    this.pokeFollower();
    return result;
  }

  /** Whether the caller may see the site: its installer (or a sub-installer), a distributor, or one of its property managers. */
  owns(principal: Principal, site: { id: string; installerId: string }): boolean {
    if (principal.role === 'distributor') return true;
    return principal.accountId === site.installerId && (principal.sites === null || principal.sites.includes(site.id));
  }

  /** The site when the caller may see it (404 otherwise), read in `q`; `lock` keeps it until `q`'s transaction ends. */
  async site(q: Queryable, principal: Principal, siteId: string, lock = false): Promise<SiteRow> {
    const query = q.select().from(sites).where(eq(sites.id, siteId)).limit(1);
    const rows = lock ? await query.for('update') : await query;
    const site = rows[0];
    if (!site || !this.owns(principal, site)) throw notFound('site', { siteId });
    return site;
  }

  async building(q: Queryable, principal: Principal, buildingId: string): Promise<{ building: BuildingRow; site: SiteRow }> {
    const rows = await q.select({ building: buildings, site: sites }).from(buildings).innerJoin(sites, eq(sites.id, buildings.siteId)).where(eq(buildings.id, buildingId)).limit(1);
    const row = rows[0];
    if (!row || !this.owns(principal, row.site)) throw notFound('building', { buildingId });
    return row;
  }

  /** Refuses (409 `code`) a removal while devices are placed where `where` says. */
  async refuseWhilePlaced(tx: Queryable, where: SQL, code: string, message: string): Promise<void> {
    const placed = await tx.select({ mac: placements.mac }).from(placements).where(where).limit(20);
    if (placed.length) throw conflict(code, message, { macs: placed.map((p) => p.mac) });
  }
}
