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
 * Idempotency keys of job-creating requests. The key is claimed, with the answer, in the transaction that
 * created the jobs, by its last statement: a request costs one statement for its key. When the key was
 * taken (by an earlier request, or one racing: the insert waits for that one's transaction) the caller
 * rolls its work back and answers the earlier answer (`earlier`).
 */
export class IdempotentRequests {
  constructor(private readonly db: Db) {}

  /**
   * Claims the key for this answer in the caller's transaction; false when a live request holds it. A key
   * past its time to live but not yet swept is free again and taken over.
   */
  async claimAnswered(tx: Tx, k: IdempotencyKey, body: unknown, jobIds: string[], now = Date.now()): Promise<boolean> {
    const claimed = await tx
      .insert(idempotentRequests)
      .values({ accountId: k.accountId, key: k.key, fingerprint: k.fingerprint, body, jobIds, createdAt: new Date(now) })
      .onConflictDoUpdate({
        target: [idempotentRequests.accountId, idempotentRequests.key],
        set: { fingerprint: k.fingerprint, body, jobIds, createdAt: new Date(now) },
        setWhere: lt(idempotentRequests.createdAt, new Date(now - IDEMPOTENCY_TTL_MS)),
      })
      .returning({ key: idempotentRequests.key });
    return claimed.length > 0;
  }

  /**
   * The answer of the request that holds the key (read after the caller's work was rolled back); 422 when
   * it was made for another request, null when the key is free again (swept meanwhile).
   */
  async earlier(k: IdempotencyKey): Promise<{ body: unknown; jobIds: string[] } | null> {
    const rows = await this.db
      .select()
      .from(idempotentRequests)
      .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key)))
      .limit(1);
    const earlier = rows[0];
    if (!earlier) return null;
    if (earlier.fingerprint !== k.fingerprint) {
      throw new DomainError('unprocessable', 'idempotency_key_reused', 'this Idempotency-Key was used for a different request', { key: k.key });
    }
    return { body: earlier.body, jobIds: earlier.jobIds };
  }

  /** Forgets keys older than their time to live. */
  async sweep(now = Date.now()): Promise<void> {
    await this.db.delete(idempotentRequests).where(lt(idempotentRequests.createdAt, new Date(now - IDEMPOTENCY_TTL_MS)));
  }
}
