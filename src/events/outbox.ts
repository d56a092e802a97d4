import type { Database, Queryable, Statement, Tx } from '../db/client.js';
import { runIn } from '../db/client.js';
import { Nap } from '../shared/nap.js';
import type { Logger } from '../logger.js';
import { outboundEvents } from './tables.js';

/** The event types integrators get (docs/events.md). */
export const eventTypes = [
  'device.online',
  'device.offline',
  'device.flapping',
  'site.outage',
  'job.finished',
  'upgrade.device.finished',
  'upgrade.finished',
  'call.ended',
  'door.opened',
  'directory.applied',
  'webhook.test',
] as const;
export type EventType = (typeof eventTypes)[number];

export interface NewOutboundEvent {
  type: EventType;
  installerId: string | null;
  siteId?: string | null;
  mac?: string | null;
  endpointId?: string | null;
  data: Record<string, unknown>;
  at?: Date;
}

/** Writes events in the caller's transaction: they leave the cloud exactly when what they report commits. */
export async function emitEvents(q: Queryable, events: NewOutboundEvent[]): Promise<void> {
  if (!events.length) return;
  await q.insert(outboundEvents).values(
    events.map((e) => ({ type: e.type, installerId: e.installerId, siteId: e.siteId ?? null, mac: e.mac ?? null, endpointId: e.endpointId ?? null, data: e.data, ...(e.at ? { at: e.at } : {}) })),
  );
}

export interface OutboxRow {
  id: number;
  tx: string;
  [column: string]: unknown;
}

export interface OutboxReaderOptions {
  database: Database;
  log: Logger;
  /** presence_events or outbound_events. */
  table: 'presence_events' | 'outbound_events';
  /** The reader's cursor row in outbox_cursors. */
  name: string;
  /** Handles rows in order; what it writes through `tx` commits with the cursor (exactly once). */
  handle(rows: OutboxRow[], tx: Tx): Promise<void>;
  /** Also run on every pass, rows or not (timers: the presence grace). */
  tick?(tx: Tx): Promise<void>;
  /** Only the process holding the reader's lease reads, in a cluster. */
  mayRun?: () => Promise<boolean>;
  pollMs?: number;
  batchSize?: number;
}

/**
 * Reads an outbox in (tx, id) order, below the oldest transaction still running (as the job event
 * follower does), and hands each batch with the cursor's move to one transaction; failures are logged
 * and tried again with backoff, never thrown out of the loop.
 */
export class OutboxReader {
  private closed = false;
  private loop: Promise<void> | null = null;
  private readonly nap = new Nap();
  private readonly read: Statement;
  private readonly lock: Statement;
  private readonly move: Statement;

  constructor(private readonly opts: OutboxReaderOptions) {
    this.read = {
      name: `${opts.table}_read`,
      text: `SELECT o.*, o.tx::text AS tx FROM ${opts.table} o WHERE o.tx < pg_snapshot_xmin(pg_current_snapshot()) AND (o.tx, o.id) > ($1::xid8, $2::bigint) ORDER BY o.tx, o.id LIMIT $3`,
    };
    this.lock = { name: 'outbox_cursor_lock', text: `INSERT INTO outbox_cursors (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING last_tx::text AS last_tx, last_id` };
    this.move = { name: 'outbox_cursor_move', text: 'UPDATE outbox_cursors SET last_tx = $2::xid8, last_id = $3::bigint, updated_at = now() WHERE name = $1' };
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Something was written: read now rather than at the next poll. */
  poke = (): void => {
    this.nap.wake();
  };

  async stop(): Promise<void> {
    this.closed = true;
    this.nap.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let more = false;
      try {
        if (!this.opts.mayRun || (await this.opts.mayRun())) more = await this.pass();
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 20 === 0) this.opts.log.warn({ reader: this.opts.name, err: (err as Error).message }, 'an outbox reader failed; it tries again');
        await this.nap.sleep(Math.min(30_000, 100 * 2 ** Math.min(failures, 9)) * (0.5 + Math.random() / 2));
        continue;
      }
      if (!more) await this.nap.sleep(this.opts.pollMs ?? 100);
    }
  }


  /** One batch; true when there may be more. */
  async pass(): Promise<boolean> {
    const limit = this.opts.batchSize ?? 500;
    return this.opts.database.db.transaction(async (tx) => {
      // The cursor row is locked for the batch: two readers (a lease that lapsed) take turns.
      const [cursor] = await runIn<{ last_tx: string; last_id: string | number }>(tx, this.lock, [this.opts.name]);
      const rows = await runIn<OutboxRow>(tx, this.read, [cursor!.last_tx, Number(cursor!.last_id), limit]);
      if (rows.length) {
        await this.opts.handle(
          rows.map((r) => ({ ...r, id: Number(r.id) })),
          tx,
        );
        const last = rows[rows.length - 1]!;
        await runIn(tx, this.move, [this.opts.name, last.tx, Number(last.id)]);
      }
      await this.opts.tick?.(tx);
      return rows.length === limit;
    });
  }
}
