import { and, count, desc, eq, ilike, isNotNull, isNull, or, sql, type SQL } from 'drizzle-orm';
import type { AccountService, Principal } from '../accounts/service.js';
import { accountNames } from '../accounts/queries.js';
import { recordWrite } from '../audit/service.js';
import type { Db } from '../db/client.js';
import { boundDevices, isBound } from '../devices/queries.js';
import type { SheetRow } from '../shared/csv.js';
import { badRequest, conflict, forbidden, notFound } from '../shared/errors.js';
import type { DomainEvents } from '../shared/events.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';
import { parseMacCsv } from './csv.js';
import type { MacEntry } from './schemas.js';
import { macLibrary } from './tables.js';

const INSERT_CHUNK = 5000;

export class MacLibraryService {
  private readonly bound;
  private readonly installers;

  constructor(
    private readonly db: Db,
    private readonly accounts: AccountService,
    private readonly events: DomainEvents,
  ) {
    this.bound = boundDevices(db);
    this.installers = accountNames(db);
  }

  /** Whose library receives new MACs: an installer's own; a distributor must name an existing installer. */
  private async targetInstaller(principal: Principal, installerId: string | undefined): Promise<string> {
    if (principal.role === 'installer') {
      if (installerId && installerId !== principal.accountId) throw forbidden('an installer can only add MACs to its own MAC library');
      return principal.accountId;
    }
    if (!installerId) throw badRequest('installer_required', 'a distributor must name the installer (installerId) whose MAC library receives the MAC');
    await this.accounts.getInstaller(installerId);
    return installerId;
  }

  async add(principal: Principal, mac: string, installerId?: string): Promise<MacEntry> {
    const owner = await this.targetInstaller(principal, installerId);
    await this.db.transaction(async (tx) => {
      const inserted = await tx.insert(macLibrary).values({ mac, installerId: owner }).onConflictDoNothing().returning();
      if (!inserted[0]) throw conflict('mac_already_registered', `MAC ${mac} is already registered in a MAC library`, { mac });
      await recordWrite(tx, principal, { installerId: owner, action: 'mac.added', subject: mac });
    });
    this.events.emit('mac-library.added', { macs: [mac] });
    return this.get(principal, mac);
  }

  /** `read` gives the file's rows (read off the event loop); it runs once the target library is known. */
  async importCsv(principal: Principal, read: () => Promise<SheetRow[]>, installerId?: string) {
    const owner = await this.targetInstaller(principal, installerId);
    const parsed = parseMacCsv(await read());
    const unique = [...new Set(parsed.rows.map((r) => r.mac))];
    const added: string[] = [];
    // All valid rows in one transaction: an import is written whole or not at all.
    await this.db.transaction(async (tx) => {
      for (let i = 0; i < unique.length; i += INSERT_CHUNK) {
        const chunk = unique.slice(i, i + INSERT_CHUNK).map((mac) => ({ mac, installerId: owner }));
        const rows = await tx.insert(macLibrary).values(chunk).onConflictDoNothing().returning({ mac: macLibrary.mac });
        for (const r of rows) added.push(r.mac);
      }
      await recordWrite(tx, principal, { installerId: owner, action: 'mac.imported', subject: null, details: { added: added.length, rows: parsed.rows.length, invalid: parsed.invalid.length } });
    });
    if (added.length) this.events.emit('mac-library.added', { macs: added });
    return { added: added.length, skipped: parsed.rows.length - added.length, invalid: parsed.invalid };
  }

  private scope(principal: Principal): SQL | undefined {
    return principal.role === 'distributor' ? undefined : eq(macLibrary.installerId, principal.accountId);
  }

  private baseQuery() {
    return this.db
      .select({
        mac: macLibrary.mac,
        installerId: this.installers.id,
        installerName: this.installers.name,
        owner: this.bound.name,
        lastSeenAt: macLibrary.lastSeenAt,
        createdAt: macLibrary.createdAt,
      })
      .from(macLibrary)
      .innerJoin(this.installers, eq(this.installers.id, macLibrary.installerId))
      .leftJoin(this.bound, eq(this.bound.mac, macLibrary.mac));
  }

  private static view(r: { mac: string; installerId: string; installerName: string; owner: string | null; lastSeenAt: Date | null; createdAt: Date }): MacEntry {
    return {
      mac: r.mac,
      installer: { id: r.installerId, name: r.installerName },
      owner: r.owner,
      lastSeenAt: r.lastSeenAt?.toISOString() ?? null,
      createdAt: r.createdAt.toISOString(),
    };
  }

  async get(principal: Principal, mac: string): Promise<MacEntry> {
    const rows = await this.baseQuery()
      .where(and(eq(macLibrary.mac, mac), this.scope(principal)))
      .limit(1);
    if (!rows[0]) throw notFound('MAC', { mac });
    return MacLibraryService.view(rows[0]);
  }

  async list(principal: Principal, q: { search?: string; bound?: boolean; page: number; pageSize: number }): Promise<Page<MacEntry>> {
    const conditions: (SQL | undefined)[] = [this.scope(principal)];
    if (q.search) {
      const macPart = q.search.replace(/[:\-\s]/g, '').toUpperCase();
      conditions.push(or(macPart ? ilike(macLibrary.mac, likePattern(macPart)) : undefined, ilike(this.bound.name, likePattern(q.search))));
    }
    if (q.bound !== undefined) conditions.push(q.bound ? isNotNull(this.bound.mac) : isNull(this.bound.mac));
    const where = and(...conditions);
    return paginate(
      this.baseQuery()
        .where(where)
        .orderBy(desc(macLibrary.createdAt), desc(macLibrary.mac))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db
        .select({ n: count() })
        .from(macLibrary)
        .leftJoin(this.bound, eq(this.bound.mac, macLibrary.mac))
        .where(where),
      MacLibraryService.view,
      q.page,
      q.pageSize,
    );
  }

  async remove(principal: Principal, mac: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx
        .select({ mac: macLibrary.mac, installerId: macLibrary.installerId })
        .from(macLibrary)
        .where(and(eq(macLibrary.mac, mac), this.scope(principal)))
        .for('update')
        .limit(1);
      if (!rows[0]) throw notFound('MAC', { mac });
      if (await isBound(tx, mac)) throw conflict('mac_bound', `MAC ${mac} is bound to a device; delete the device first`, { mac });
      await tx.delete(macLibrary).where(eq(macLibrary.mac, mac));
      await recordWrite(tx, principal, { installerId: rows[0].installerId, action: 'mac.removed', subject: mac });
    });
    this.events.emit('mac-library.removed', { mac });
  }

  /** Records when these MACs were last seen connected (one statement for a whole batch). */
  async recordSeen(seen: { mac: string; seenAt: Date }[]): Promise<void> {
    if (!seen.length) return;
    // Arrays, not a jsonb document: the planner then knows the batch's size and looks the MACs up by index.
    await this.db.execute(sql`
      UPDATE mac_library m SET last_seen_at = u.seen_at
      FROM unnest(${sql.param(seen.map((s) => s.mac))}::text[], ${sql.param(seen.map((s) => s.seenAt.toISOString()))}::timestamptz[]) AS u(mac, seen_at)
      WHERE m.mac = u.mac`);
  }

  /** Every registered MAC: the gateway's authentication cache is filled from this once at start. */
  async allMacs(): Promise<string[]> {
    const rows = await this.db.select({ mac: macLibrary.mac }).from(macLibrary);
    return rows.map((r) => r.mac);
  }

}

