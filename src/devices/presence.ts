import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';

/** What the gateway saw of one device since the last flush; absent fields are left as they are. */
export interface PresenceUpdate {
  mac: string;
  seenAt: Date;
  status?: 'online' | 'offline';
  /**
   * The session a status belongs to (increasing across the deployment). Online applies over any older
   * session; offline over that session or an older one, so a late end of an older session elsewhere never
   * shows a connected device offline.
   */
  epoch?: number;
  /** The gateway process holding the session (with an online status). */
  gateway?: string;
  connectedAt?: Date;
  ip?: string;
  model?: string;
  firmware?: string;
}

/**
 * Writes the devices' presence in batches: one statement for any number of devices, so a boot storm of
 * thousands of connects costs a handful of round trips instead of one per device.
 */
export class PresenceStore {
  constructor(private readonly db: Db) {}

  async apply(updates: PresenceUpdate[]): Promise<void> {
    if (!updates.length) return;
    // In MAC order: two statements over the same devices (presence, a batched exchange) then
    // lock them in the same order instead of deadlocking.
    const sorted = [...updates].sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));
    const col = <T>(f: (u: PresenceUpdate) => T | undefined) => sql.param(sorted.map((u) => f(u) ?? null));
    // A session's start (online) counts only if it is newer than the session the row names; its end
    // (offline) if it is that session or newer (a start and end merged into one batch never landed the
    // start), and the row then names it, so an older session's late start cannot bring the device back.
    // Arrays, not a jsonb document: the planner knows the batch's size and looks the MACs up by index.
    await this.db.execute(sql`
      WITH u AS (
        SELECT * FROM unnest(${col((u) => u.mac)}::text[], ${col((u) => u.status)}::text[], ${col((u) => u.epoch)}::bigint[], ${col((u) => u.gateway)}::text[],
          ${col((u) => u.connectedAt?.toISOString())}::timestamptz[], ${col((u) => u.ip)}::text[], ${col((u) => u.model)}::text[], ${col((u) => u.firmware)}::text[])
          AS u(mac, status, epoch, gateway, connected_at, ip, model, firmware)
      ), locked AS (
        -- In MAC order, whatever plan the update gets: a batched configuration hash exchange locks the
        -- same rows in the same order instead of deadlocking with this.
        SELECT d.mac, d.status AS was FROM devices d JOIN u ON u.mac = d.mac ORDER BY d.mac FOR UPDATE OF d
      ), changed AS (
      UPDATE devices d SET
        status = CASE
          WHEN u.status = 'online' AND (u.epoch IS NULL OR d.session_epoch IS NULL OR u.epoch > d.session_epoch) THEN 'online'
          WHEN u.status = 'offline' AND (u.epoch IS NULL OR d.session_epoch IS NULL OR u.epoch >= d.session_epoch) THEN 'offline'
          ELSE d.status END,
        session_epoch = CASE WHEN u.status IS NOT NULL AND u.epoch IS NOT NULL AND (d.session_epoch IS NULL OR u.epoch >= d.session_epoch) THEN u.epoch ELSE d.session_epoch END,
        session_gateway = CASE WHEN u.status = 'online' AND u.epoch IS NOT NULL AND (d.session_epoch IS NULL OR u.epoch > d.session_epoch) THEN u.gateway ELSE d.session_gateway END,
        last_connected_at = COALESCE(u.connected_at, d.last_connected_at),
        ip = COALESCE(u.ip, d.ip),
        model = COALESCE(u.model, d.model),
        firmware = COALESCE(u.firmware, d.firmware)
      FROM u, locked l
      WHERE d.mac = u.mac AND l.mac = u.mac
      RETURNING d.mac, d.status, l.was)
      -- The presence outbox: every change of status, in the same statement (docs/events.md).
      INSERT INTO presence_events (mac, status) SELECT mac, status FROM changed WHERE status IS DISTINCT FROM was`);
  }

  /** At gateway start no session exists yet, so every device is offline until it connects again. */
  async markAllOffline(): Promise<void> {
    await this.db.execute(sql`WITH changed AS (UPDATE devices SET status = 'offline' WHERE status <> 'offline' RETURNING mac) INSERT INTO presence_events (mac, status) SELECT mac, 'offline' FROM changed`);
  }

  /** The gateway processes that hold online devices according to the database. */
  async gatewaysHoldingDevices(): Promise<string[]> {
    const result = (await this.db.execute(sql`SELECT DISTINCT session_gateway AS g FROM devices WHERE status = 'online' AND session_gateway IS NOT NULL`)) as unknown as {
      rows: { g: string }[];
    };
    return result.rows.map((r) => r.g);
  }

  /** A gateway process died: the devices it held are offline until they connect elsewhere. */
  async markGatewayOffline(gateway: string): Promise<number> {
    const result = (await this.db.execute(
      sql`WITH changed AS (UPDATE devices SET status = 'offline' WHERE status = 'online' AND session_gateway = ${gateway} RETURNING mac) INSERT INTO presence_events (mac, status) SELECT mac, 'offline' FROM changed`,
    )) as unknown as {
      rowCount?: number;
      affectedRows?: number;
    };
    return result.rowCount ?? result.affectedRows ?? 0;
  }
}
