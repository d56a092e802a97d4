import { createHash } from 'node:crypto';
import type { Principal } from '../accounts/service.js';

/** How other API processes hear of a revoked token (the cluster bus); absent in a single process. */
export interface TokenRevocations {
  tokenRevoked(tokenId: string): void;
  onTokenRevoked(listener: (tokenId: string) => void): void;
  /** Messages sent while the bus was down are lost: the cache starts over when it is back. */
  onReconnect(listener: () => void): void;
}

export interface TokenCacheOptions {
  /** A cached token is read again after this long, whatever the bus said (a lost message's bound). */
  ttlMs?: number;
  /** Tokens kept at most; the oldest goes first. */
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  principal: Principal;
  tokenId: string;
  at: number;
}

/**
 * Valid tokens, read from PostgreSQL once and kept for `ttlMs`: a job request then costs no token read.
 * A revocation here drops the token at once and tells the other API processes over the bus; a read that
 * began before any revocation does not fill the cache (it may have seen the token still valid).
 */
export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Bumped by every revocation and reset; a read from an older generation is not cached. */
  private generation = 0;

  constructor(
    private readonly source: { authenticate(token: string): Promise<Principal | null> },
    private readonly revocations: TokenRevocations | null,
    opts: TokenCacheOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.now = opts.now ?? Date.now;
    revocations?.onTokenRevoked((id) => this.forget(id));
    revocations?.onReconnect(() => this.clear());
  }

  /** The token's principal (a fresh copy the request may change), or null when it is unknown or revoked. */
  async authenticate(token: string): Promise<Principal | null> {
    const key = createHash('sha256').update(token).digest('base64url');
    const hit = this.entries.get(key);
    if (hit && this.now() - hit.at < this.ttlMs) return { ...hit.principal };
    if (hit) this.entries.delete(key);
    const generation = this.generation;
    const principal = await this.source.authenticate(token);
    if (principal && generation === this.generation) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(key, { principal: { ...principal }, tokenId: principal.tokenId, at: this.now() });
    }
    return principal;
  }

  /** A token was revoked in this process: forget it here and in the other processes. */
  revoked(tokenId: string): void {
    this.forget(tokenId);
    this.revocations?.tokenRevoked(tokenId);
  }

  private forget(tokenId: string): void {
    this.generation++;
    for (const [key, e] of this.entries) if (e.tokenId === tokenId) this.entries.delete(key);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
