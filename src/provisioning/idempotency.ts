import { and, eq, lt } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.js';
import { violatedUnique } from '../db/errors.js';
import { conflict, DomainError } from '../shared/errors.js';
import { idempotentRequests } from './tables.js';

/** How long a key answers retries. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600_000;
/** How long a claimed key may wait for its answer before a retry is told the answer was lost. */
const ANSWER_GRACE_MS = 30_000;

/** A job-creating request made with an Idempotency-Key header. */
export interface IdempotencyKey {
  accountId: string;
  key: string;
  /** SHA-256 of what was asked (method, route, parameters, body). */
  fingerprint: string;
}

/**
 * Idempotency keys of job-creating requests. A request of one statement claims the key in that statement
 * (with its jobs' ids; a key held fails it) and stores its answer by a second (`answer`); a request of a
 * transaction claims the key with its answer by the transaction's last statement (`claimAnswered`). When
 * the key was taken (by an earlier request, or one racing: the insert waits for that one's transaction)
 * the caller's work is undone and it answers the earlier answer (`earlier`).
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

  /** Whether a statement failed because it claimed a key another request holds. */
  isHeld(err: unknown): boolean {
    return violatedUnique(err) === 'idempotent_requests_account_id_key_pk';
  }

  /** Stores the answer of a request whose statement claimed the key (`createClaimingStatement`). */
  async answer(k: IdempotencyKey, body: unknown): Promise<void> {
    await this.db
      .update(idempotentRequests)
      .set({ body })
      .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key)));
  }

  /**
   * The answer of the request that holds the key (read after the caller's work was undone); 422 when it
   * was made for another request, 409 while its answer is still being made (or was lost: its jobs were
   * recorded, their ids are in the details), null when the key is free again (swept meanwhile, or past its
   * time to live: then it is released here).
   */
  async earlier(k: IdempotencyKey, now = Date.now()): Promise<{ body: unknown; jobIds: string[] } | null> {
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
    const age = now - earlier.createdAt.getTime();
    if (age >= IDEMPOTENCY_TTL_MS) {
      // Released only if the database agrees it expired (created_at holds microseconds a Date drops).
      const released = await this.db
        .delete(idempotentRequests)
        .where(and(eq(idempotentRequests.accountId, k.accountId), eq(idempotentRequests.key, k.key), lt(idempotentRequests.createdAt, new Date(now - IDEMPOTENCY_TTL_MS))))
        .returning({ key: idempotentRequests.key });
      if (released.length) return null;
    }
    if (earlier.body === null) {
      if (age < ANSWER_GRACE_MS) throw conflict('idempotency_key_in_progress', 'a request with this Idempotency-Key is still being answered; retry in a second', { key: k.key, retryAfterSeconds: 1 });
      throw conflict('idempotency_key_unanswered', 'the request that first used this Idempotency-Key recorded its jobs, but its answer was lost: look them up by id', { key: k.key, jobIds: earlier.jobIds });
    }
    return { body: earlier.body, jobIds: earlier.jobIds };
  }

  /** Forgets keys older than their time to live. */
  async sweep(now = Date.now()): Promise<void> {
    await this.db.delete(idempotentRequests).where(lt(idempotentRequests.createdAt, new Date(now - IDEMPOTENCY_TTL_MS)));
  }
}
