import { createHash, randomBytes } from 'node:crypto';
import { and, asc, count, desc, eq, ilike, isNull, or } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.js';
import { badRequest, conflict, forbidden, notFound } from '../shared/errors.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';
import { accounts, apiTokens } from './tables.js';
import { recordWrite } from '../audit/service.js';
import type { AccountView } from './schemas.js';

/**
 * Who a request acts for. `accountId` is whose data it works on (an installer, or a distributor), `actorId`
 * the account that made the request (written into audit logs). A sub-installer works as its installer
 * (role `installer`, `subInstaller`); a property manager works on its installer's data, only in `sites`.
 */
export interface Principal {
  accountId: string;
  actorId: string;
  role: 'distributor' | 'installer' | 'property-manager';
  subInstaller: boolean;
  /** A property manager's sites (filled in by the API from the directory); null for everyone else. */
  sites: string[] | null;
  tokenId: string;
}

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
const newToken = () => `ic_${randomBytes(32).toString('base64url')}`;

type AccountRow = typeof accounts.$inferSelect;
const view = (a: AccountRow): AccountView => ({ id: a.id, role: a.role, name: a.name, email: a.email, parentId: a.parentId ?? null, createdAt: a.createdAt.toISOString() });

export class AccountService {
  constructor(private readonly db: Db) {}

  async authenticate(token: string): Promise<Principal | null> {
    const rows = await this.db
      .select({ tokenId: apiTokens.id, id: accounts.id, role: accounts.role, parentId: accounts.parentId })
      .from(apiTokens)
      .innerJoin(accounts, eq(accounts.id, apiTokens.accountId))
      .where(and(eq(apiTokens.tokenHash, hashToken(token)), isNull(apiTokens.revokedAt)))
      .limit(1);
    const r = rows[0];
    if (!r) return null;
    const member = r.role === 'sub-installer' || r.role === 'property-manager';
    return {
      tokenId: r.tokenId,
      accountId: member ? r.parentId! : r.id,
      actorId: r.id,
      role: r.role === 'sub-installer' ? 'installer' : r.role,
      subInstaller: r.role === 'sub-installer',
      sites: null,
    };
  }

  /**
   * An installer makes an account that works for it: a sub-installer, or a property manager (`within` runs in
   * the same transaction, e.g. to give the manager its sites). Answers the account and its token, once.
   */
  async createMember(
    principal: Principal,
    role: 'sub-installer' | 'property-manager',
    input: { name: string; email: string },
    within?: (tx: Tx, accountId: string) => Promise<void>,
  ): Promise<{ account: AccountView; token: { id: string; token: string } }> {
    if (principal.role !== 'installer' || principal.subInstaller) throw forbidden('only an installer makes sub-installer and property manager accounts');
    return this.db.transaction(async (tx) => {
      const [account] = await tx
        .insert(accounts)
        .values({ role, name: input.name, email: input.email, parentId: principal.accountId })
        .onConflictDoNothing({ target: accounts.email })
        .returning();
      if (!account) throw conflict('email_taken', `an account with email ${input.email} already exists`, { email: input.email });
      await within?.(tx, account.id);
      await recordWrite(tx, principal, { installerId: principal.accountId, action: `${role}.created`, subject: account.id, details: { name: account.name, email: account.email } });
      const token = newToken();
      const [row] = await tx.insert(apiTokens).values({ accountId: account.id, tokenHash: hashToken(token) }).returning({ id: apiTokens.id });
      return { account: view(account), token: { id: row!.id, token } };
    });
  }

  /** Runs `work` in a transaction on behalf of one of the caller's accounts (only an installer changes them). */
  async withinMember(principal: Principal, work: (tx: Tx) => Promise<void>): Promise<void> {
    if (principal.role !== 'installer' || principal.subInstaller) throw forbidden('only an installer changes its property managers');
    await this.db.transaction(work);
  }

  /** The caller's property manager (404 for anyone else's). */
  async getMember(principal: Principal, id: string, role: 'sub-installer' | 'property-manager'): Promise<AccountView> {
    const rows = await this.db.select().from(accounts).where(and(eq(accounts.id, id), eq(accounts.role, role))).limit(1);
    const account = rows[0];
    if (!account || (principal.role !== 'distributor' && account.parentId !== principal.accountId)) throw notFound(role.replace('-', ' '), { id });
    return view(account);
  }

  /**
   * The accounts of one role that work for the caller's installer (a distributor names the installer),
   * by name; `search` matches part of the name or email.
   */
  async listMembers(principal: Principal, role: 'sub-installer' | 'property-manager', q: { installerId?: string | undefined; search?: string | undefined; page: number; pageSize: number }): Promise<Page<AccountView>> {
    if (principal.role === 'property-manager') throw forbidden('only the installer lists its accounts');
    if (principal.role === 'distributor' && !q.installerId) throw badRequest('installer_required', 'a distributor names the installer (installerId)');
    const parent = principal.role === 'distributor' ? q.installerId! : principal.accountId;
    const pattern = q.search ? likePattern(q.search) : null;
    const where = and(eq(accounts.role, role), eq(accounts.parentId, parent), pattern ? or(ilike(accounts.name, pattern), ilike(accounts.email, pattern)) : undefined);
    return paginate(
      this.db.select().from(accounts).where(where).orderBy(asc(accounts.name), asc(accounts.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(accounts).where(where),
      view,
      q.page,
      q.pageSize,
    );
  }

  /** The caller's own tokens, newest first: when made and revoked, which one this request uses; never a secret. */
  async listTokens(principal: Principal, q: { page: number; pageSize: number }): Promise<Page<{ id: string; createdAt: string; revokedAt: string | null; current: boolean }>> {
    const where = eq(apiTokens.accountId, principal.actorId);
    return paginate(
      this.db.select({ id: apiTokens.id, createdAt: apiTokens.createdAt, revokedAt: apiTokens.revokedAt }).from(apiTokens).where(where).orderBy(desc(apiTokens.createdAt), desc(apiTokens.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(apiTokens).where(where),
      (t) => ({ id: t.id, createdAt: t.createdAt.toISOString(), revokedAt: t.revokedAt?.toISOString() ?? null, current: t.id === principal.tokenId }),
      q.page,
      q.pageSize,
    );
  }

  async createInstaller(principal: Principal, input: { name: string; email: string }): Promise<{ installer: AccountView; token: { id: string; token: string } }> {
    return this.db.transaction(async (tx) => {
      const inserted = await tx
        .insert(accounts)
        .values({ role: 'installer', name: input.name, email: input.email })
        .onConflictDoNothing({ target: accounts.email })
        .returning();
      const account = inserted[0];
      if (!account) throw conflict('email_taken', `an account with email ${input.email} already exists`, { email: input.email });
      const token = newToken();
      const [row] = await tx.insert(apiTokens).values({ accountId: account.id, tokenHash: hashToken(token) }).returning({ id: apiTokens.id });
      await recordWrite(tx, principal, { installerId: account.id, action: 'installer.created', subject: account.id, details: { name: account.name, email: account.email } });
      return { installer: view(account), token: { id: row!.id, token } };
    });
  }

  async listInstallers(page: number, pageSize: number): Promise<Page<AccountView>> {
    const where = eq(accounts.role, 'installer');
    return paginate(
      this.db.select().from(accounts).where(where).orderBy(asc(accounts.createdAt), asc(accounts.id)).limit(pageSize).offset((page - 1) * pageSize),
      this.db.select({ n: count() }).from(accounts).where(where),
      view,
      page,
      pageSize,
    );
  }

  async getAccount(id: string): Promise<AccountView | null> {
    const rows = await this.db.select().from(accounts).where(eq(accounts.id, id)).limit(1);
    return rows[0] ? view(rows[0]) : null;
  }

  async getInstaller(id: string): Promise<AccountView> {
    const account = await this.getAccount(id);
    if (!account || account.role !== 'installer') throw notFound('installer', { installerId: id });
    return account;
  }

  async issueToken(accountId: string): Promise<{ id: string; token: string }> {
    const token = newToken();
    const [row] = await this.db.insert(apiTokens).values({ accountId, tokenHash: hashToken(token) }).returning({ id: apiTokens.id });
    return { id: row!.id, token };
  }

  /** Revokes a token; an account may revoke only its own, a distributor any. */
  async revokeToken(principal: Principal, tokenId: string): Promise<void> {
    const rows = await this.db.select().from(apiTokens).where(eq(apiTokens.id, tokenId)).limit(1);
    const token = rows[0];
    if (!token || (principal.role !== 'distributor' && token.accountId !== principal.actorId)) throw notFound('token', { tokenId });
    await this.db.transaction(async (tx) => {
      await tx.update(apiTokens).set({ revokedAt: new Date() }).where(and(eq(apiTokens.id, tokenId), isNull(apiTokens.revokedAt)));
      await recordWrite(tx, principal, { installerId: principal.role === 'distributor' ? null : principal.accountId, action: 'token.revoked', subject: tokenId });
    });
  }

  /**
   * First start: creates the first distributor account. With ADMIN_TOKEN given, that token is made valid
   * for the first distributor (also on later starts, so automation can rely on it); otherwise a token is
   * generated and returned once so the caller can print it.
   */
  async bootstrapDistributor(adminToken: string | undefined): Promise<{ created: boolean; generatedToken: string | null }> {
    return this.db.transaction(async (tx) => {
      const existing = await tx.select().from(accounts).where(eq(accounts.role, 'distributor')).orderBy(asc(accounts.createdAt)).limit(1);
      let distributor = existing[0];
      const created = !distributor;
      if (!distributor) {
        [distributor] = await tx.insert(accounts).values({ role: 'distributor', name: 'Distributor', email: 'distributor@localhost' }).onConflictDoNothing().returning();
        if (!distributor) throw new Error('could not create the first distributor account');
      }
      if (adminToken) {
        await tx.insert(apiTokens).values({ accountId: distributor.id, tokenHash: hashToken(adminToken) }).onConflictDoNothing({ target: apiTokens.tokenHash });
        return { created, generatedToken: null };
      }
      if (!created) return { created, generatedToken: null };
      const token = newToken();
      await tx.insert(apiTokens).values({ accountId: distributor.id, tokenHash: hashToken(token) });
      return { created, generatedToken: token };
    });
  }
}
