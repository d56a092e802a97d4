import { eq, inArray } from 'drizzle-orm';
import type { Db, Queryable } from '../db/client.js';
import { devices } from './tables.js';

// What other domains may ask of the devices table, as query functions: they never name it themselves.

/** The bound device of each MAC (its name), as a subquery another domain's list can join on `mac`. */
export const boundDevices = (db: Db) => db.select({ mac: devices.mac, name: devices.name }).from(devices).as('bound_devices');

/** Whether a device is bound to the MAC, read inside the caller's transaction. */
export async function isBound(q: Queryable, mac: string): Promise<boolean> {
  const rows = await q.select({ mac: devices.mac }).from(devices).where(eq(devices.mac, mac)).limit(1);
  return rows.length > 0;
}

/** What the directory renders of each placed device: type, name, SIP number, location and door relays. */
export async function deviceFacts(q: Queryable, macs: string[]) {
  if (!macs.length) return [];
  return q
    .select({ mac: devices.mac, type: devices.type, name: devices.name, sipNumber: devices.sipNumber, location: devices.location, installerId: devices.installerId, relays: devices.relays })
    .from(devices)
    .where(inArray(devices.mac, macs));
}

/** The device holding a SIP account (its number), with the password the digest is checked against. */
export async function sipAccountOf(q: Queryable, sipNumber: string) {
  const rows = await q
    .select({ mac: devices.mac, type: devices.type, installerId: devices.installerId, password: devices.sipPassword })
    .from(devices)
    .where(eq(devices.sipNumber, sipNumber))
    .limit(1);
  return rows[0] ?? null;
}
