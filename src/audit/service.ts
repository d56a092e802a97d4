import { and, count, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db, Queryable } from '../db/client.js';
import { paginate, type Page } from '../shared/pagination.js';
import { writeAudit } from './tables.js';

export interface WriteEntry {
  installerId: string | null;
  siteId?: string | null;
  action: string;
  subject: string | null;
  details?: unknown;
}

export interface WriteView {
  id: number;
  at: string;
  accountId: string;
  installerId: string | null;
  siteId: string | null;
  action: string;
  subject: string | null;
  details: unknown;
}

/** Records a write with the account that made it, inside the writing transaction (other domains call this). */
export async function recordWrite(q: Queryable, principal: Principal, entry: WriteEntry): Promise<void> {
  await recordWriteAs(q, principal.actorId, entry);
}

/** Records several writes of one request in one statement (an import's many devices). */
export async function recordWrites(q: Queryable, principal: Principal, entries: WriteEntry[]): Promise<void> {
  for (let i = 0; i < entries.length; i += 1000) {
    const chunk = entries.slice(i, i + 1000);
    await q.insert(writeAudit).values(chunk.map((e) => ({ accountId: principal.actorId, installerId: e.installerId, siteId: e.siteId ?? null, action: e.action, subject: e.subject, details: e.details ?? null })));
  }
}

/**
 * Records a write made without a signed-in account, on behalf of the account named (e.g. an app redeeming
 * a registration code: the account that issued the code), inside the writing transaction.
 */
export async function recordWriteAs(q: Queryable, actorId: string, entry: WriteEntry): Promise<void> {
  await q.insert(writeAudit).values({ accountId: actorId, installerId: entry.installerId, siteId: entry.siteId ?? null, action: entry.action, subject: entry.subject, details: entry.details ?? null });
}

/** The write audit as accounts read it: a distributor all, an installer its own data, a property manager its sites. */
export class WriteAuditLog {
  constructor(private readonly db: Db) {}

  async list(principal: Principal, q: { siteId?: string; subject?: string; page: number; pageSize: number }): Promise<Page<WriteView>> {
    const scope =
      principal.role === 'distributor'
        ? undefined
        : principal.sites
          ? principal.sites.length
            ? and(eq(writeAudit.installerId, principal.accountId), inArray(writeAudit.siteId, principal.sites))
            : sql`false`
          : eq(writeAudit.installerId, principal.accountId);
    const where = and(scope, q.siteId ? eq(writeAudit.siteId, q.siteId) : undefined, q.subject ? eq(writeAudit.subject, q.subject) : undefined);
    return paginate(
      this.db.select().from(writeAudit).where(where).orderBy(desc(writeAudit.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(writeAudit).where(where),
      (r) => ({ id: r.id, at: r.at.toISOString(), accountId: r.accountId, installerId: r.installerId, siteId: r.siteId, action: r.action, subject: r.subject, details: r.details ?? null }),
      q.page,
      q.pageSize,
    );
  }
}
