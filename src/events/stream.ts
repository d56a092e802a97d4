import type { Principal } from '../accounts/service.js';
import type { Database } from '../db/client.js';

// The live event stream (GET /api/v1/events, Server-Sent Events): the same events as webhooks, scoped to
// what the caller may see, resumable with Last-Event-ID within the retention window. Each stream reads
// the outbox below the oldest running transaction, so a resumed stream has no gap.

export interface StreamedEvent {
  /** `tx:id`: what Last-Event-ID carries back. */
  position: string;
  type: string;
  body: string;
}

interface StreamRow {
  id: string | number;
  tx: string;
  type: string;
  event_id: string;
  at: Date | string;
  data: unknown;
  installer_id: string | null;
  site_id: string | null;
  endpoint_id: string | null;
}

interface Cursor {
  tx: string;
  id: number;
}

const parse = (v: string | undefined): Cursor | null => {
  const m = v ? /^([0-9]{1,20}):([0-9]{1,20})$/.exec(v.trim()) : null;
  return m ? { tx: m[1]!, id: Number(m[2]) } : null;
};

export class EventStreams {
  private open = 0;
  private readonly perAccount = new Map<string, number>();

  constructor(
    private readonly database: Database,
    private readonly limits: { perAccount: number; total: number; pollMs: number } = { perAccount: 5, total: 500, pollMs: 200 },
  ) {}

  /** Whether another stream may open for this account and its installer (counted until `release`). */
  take(actorId: string, accountId: string): boolean {
    const mine = this.perAccount.get(actorId) ?? 0;
    const installer = this.perAccount.get(`installer:${accountId}`) ?? 0;
    if (mine >= this.limits.perAccount || installer >= this.limits.perAccount * 4 || this.open >= this.limits.total) return false;
    this.perAccount.set(actorId, mine + 1);
    this.perAccount.set(`installer:${accountId}`, installer + 1);
    this.open++;
    return true;
  }

  release(actorId: string, accountId: string): void {
    for (const key of [actorId, `installer:${accountId}`]) this.perAccount.set(key, Math.max(0, (this.perAccount.get(key) ?? 1) - 1));
    this.open = Math.max(0, this.open - 1);
  }

  /**
   * Follows the outbox for `principal` from `lastEventId` (or from now), calling `send` in order until
   * `closed()`; answers 'reset' first when the position is no longer held (older than the retention).
   */
  async follow(
    principal: Principal,
    opts: { lastEventId?: string | undefined; types: string[]; recheck?: () => Promise<Principal | null>; recheckMs?: number },
    send: (e: StreamedEvent) => boolean | Promise<boolean>,
    closed: () => boolean,
    onReset: () => void,
  ): Promise<void> {
    let cursor = parse(opts.lastEventId);
    if (cursor) {
      const [held] = await this.database.run<{ n: number }>({ name: 'stream_held', text: 'SELECT count(*)::int AS n FROM outbound_events WHERE id = $1' }, [cursor.id]);
      if (!held?.n) {
        onReset();
        cursor = { tx: '0', id: 0 };
      }
    } else {
      const [now] = await this.database.run<{ tx: string; id: string | number }>({ name: 'stream_now', text: `SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS tx, 0 AS id` }, []);
      cursor = { tx: now!.tx, id: 0 };
    }
    let checked = Date.now();
    while (!closed()) {
      // A revoked token, or a property manager's sites taken away, ends or narrows the stream at once.
      if (opts.recheck && Date.now() - checked >= (opts.recheckMs ?? 30_000)) {
        const now = await opts.recheck();
        if (!now) return;
        principal = now;
        checked = Date.now();
      }
      const scope = principal.role === 'distributor' ? 'all' : principal.sites ? 'sites' : 'installer';
      // Every row after the cursor is read and the cursor moves past all of them: others' events are
      // skipped here, so an idle stream never scans the same rows twice.
      const rows: StreamRow[] = await this.database.run<StreamRow>(
        {
          name: 'stream_read',
          text: `SELECT id, tx::text AS tx, type, event_id, at, data, installer_id, site_id, endpoint_id FROM outbound_events
            WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) AND (tx, id) > ($1::xid8, $2::bigint) ORDER BY tx, id LIMIT 500`,
        },
        [cursor.tx, cursor.id],
      );
      const sites = new Set(principal.sites ?? []);
      const visible = (r: StreamRow) =>
        !r.endpoint_id &&
        (scope === 'all' || (r.installer_id === principal.accountId && (scope === 'installer' || (r.site_id !== null && sites.has(r.site_id))))) &&
        (!opts.types.length || opts.types.includes(r.type));
      for (const r of rows) {
        if (!visible(r)) continue;
        const body = JSON.stringify({ id: r.event_id, type: r.type, timestamp: new Date(r.at).toISOString(), data: r.data });
        if (!(await send({ position: `${r.tx}:${r.id}`, type: r.type, body }))) return;
      }
      const last: StreamRow | undefined = rows.at(-1);
      if (last) cursor = { tx: last.tx, id: Number(last.id) };
      // Past the last event read, nothing is older than the snapshot's xmin: move up to it while idle.
      if (rows.length < 500) await new Promise((resolve) => setTimeout(resolve, this.limits.pollMs));
    }
  }
}
