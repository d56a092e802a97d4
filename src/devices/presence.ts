import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';

/** What the gateway saw of one device since the last flush; absent fields are left as they are. */
export interface PresenceUpdate {
  mac: string;
  seenAt: Date;
  status?: 'online' | 'offline';
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
    const rows = JSON.stringify(
      updates.map((u) => ({
        mac: u.mac,
        status: u.status ?? null,
        connected_at: u.connectedAt?.toISOString() ?? null,
        ip: u.ip ?? null,
        model: u.model ?? null,
        firmware: u.firmware ?? null,
      })),
    );
    await this.db.execute(sql`
      UPDATE devices d SET
        status = COALESCE(u.status, d.status),
        last_connected_at = COALESCE(u.connected_at, d.last_connected_at),
        ip = COALESCE(u.ip, d.ip),
        model = COALESCE(u.model, d.model),
        firmware = COALESCE(u.firmware, d.firmware)
      FROM jsonb_to_recordset(${rows}::jsonb)
        AS u(mac text, status text, connected_at timestamptz, ip text, model text, firmware text)
      WHERE d.mac = u.mac`);
  }

  /** At gateway start no session exists yet, so every device is offline until it connects again. */
  async markAllOffline(): Promise<void> {
    await this.db.execute(sql`UPDATE devices SET status = 'offline' WHERE status <> 'offline'`);
  }
}
