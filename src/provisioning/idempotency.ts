import { and, eq, lt } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.js';
import { DomainError } from '../shared/errors.js';
import { idempotentRequests } from './tables.js';

/** How long a key answers retries. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;

/** A job-creating request made with an Idempotency-Key header. */
export interface IdempotencyKey {
  accountId: string;
  key: string;
  /** SHA-256 of what was asked (method, route, parameters, body). */
  fingerprint: string;
}

/**
 * Idempotency keys of job-creating requests. The key is claimed in the transaction that creates the jobs
 * and the answer is stored there too, so a retry (after a timeout, a 503, a dropped connection) gets the
 * first answer and no new jobs; two requests racing with one key serialise on the key's row.
 */
export class IdempotentRequests {
  constructor(private readonly db: Db) {}

  /** Claims the key in the caller's transaction; answers the earlier request's answer when it was used before. */
  async claim(tx: Tx, k: IdempotencyKey): Promise<{ body: unknown; jobIds: string[] } | null> {
    const claimed = await tx
      .insert(idempotentRequests)
      .values({ accountId: k.accountId, key: k.key, fingerprint: k.fingerprint, body: null, jobIds: [] })
      .onConflictDoNothing()
      .returning({ key: idempotentRequests.key });
    if (claimed[0]) return null;
    // The row is visible only once the transaction that claimed it has committed, answer included.
    const rows = await tx
      .select()
      .from(idempotentRequests)
      .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key)))
      .limit(1);
    const earlier = rows[0]!;
    if (earlier.createdAt.getTime() < Date.now() - IDEMPOTENCY_TTL_MS) {
      // Expired but not yet swept: the key is free again.
      await tx
        .update(idempotentRequests)
        .set({ fingerprint: k.fingerprint, body: null, jobIds: [], createdAt: new Date() })
        .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key)));
      return null;
    }
    if (earlier.fingerprint !== k.fingerprint) {
      throw new DomainError('unprocessable', 'idempotency_key_reused', 'this Idempotency-Key was used for a different request', { key: k.key });
    }
    return { body: earlier.body, jobIds: earlier.jobIds };
  }

  /** Stores the answer of the request that claimed the key, in the same transaction. */
  async record(tx: Tx, k: IdempotencyKey, body: unknown, jobIds: string[]): Promise<void> {
    await tx
      .update(idempotentRequests)
      .set({ body, jobIds })
      .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key)));
  }

  /** Forgets keys older than their time to live. */
  async sweep(now = Date.now()): Promise<void> {
    await this.db.delete(idempotentRequests).where(lt(idempotentRequests.createdAt, new Date(now - IDEMPOTENCY_TTL_MS)));
  }
}
