import { and, count, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { devices } from '../devices/tables.js';
import { apartments, buildings } from '../directory/tables.js';
import { paginate, type Page } from '../shared/pagination.js';
import { doorEventView, type DoorEventView } from './door-events.js';
import { doorEvents, type DoorOutcome } from './tables.js';

// The door log as installers read it (seed 004 "Door log"): a site's, a device's or an apartment's door
// events, filtered, with the names of the device, the relay and the apartment beside their ids.

export interface DoorLogFilter {
  mac?: string | undefined;
  apartmentId?: string | undefined;
  relay?: number | undefined;
  method?: string | undefined;
  outcome?: DoorOutcome | undefined;
  /** From this time on (inclusive), by `occurredAt`. */
  from?: Date | undefined;
  /** Before this time (exclusive). */
  to?: Date | undefined;
}

export type DoorLogScope = { siteId: string } | { mac: string; since?: Date; sites?: string[] | null } | { apartmentId: string };

export interface DoorLogEntry extends DoorEventView {
  deviceName: string | null;
  relayName: string | null;
  apartment: { id: string; number: string; name: string | null; building: string | null } | null;
}

export async function listDoorLog(db: Db, scope: DoorLogScope, q: DoorLogFilter & { page: number; pageSize: number }): Promise<Page<DoorLogEntry>> {
  const where: (SQL | undefined)[] = [
    'siteId' in scope ? eq(doorEvents.siteId, scope.siteId) : 'mac' in scope ? eq(doorEvents.mac, scope.mac) : eq(doorEvents.apartmentId, scope.apartmentId),
    'mac' in scope && scope.since ? gte(doorEvents.receivedAt, scope.since) : undefined,
    'mac' in scope && scope.sites ? (scope.sites.length ? inArray(doorEvents.siteId, scope.sites) : sql`false`) : undefined,
    q.mac ? eq(doorEvents.mac, q.mac) : undefined,
    q.apartmentId ? eq(doorEvents.apartmentId, q.apartmentId) : undefined,
    q.relay !== undefined ? eq(doorEvents.relay, q.relay) : undefined,
    q.method ? eq(doorEvents.method, q.method) : undefined,
    q.outcome ? eq(doorEvents.outcome, q.outcome) : undefined,
    q.from ? gte(doorEvents.occurredAt, q.from) : undefined,
    q.to ? lt(doorEvents.occurredAt, q.to) : undefined,
  ];
  const rows = db
    .select({ event: doorEvents, deviceName: devices.name, relays: devices.relays, apartmentNumber: apartments.number, apartmentName: apartments.name, building: buildings.name })
    .from(doorEvents)
    .leftJoin(devices, eq(devices.mac, doorEvents.mac))
    .leftJoin(apartments, eq(apartments.id, doorEvents.apartmentId))
    .leftJoin(buildings, eq(buildings.id, apartments.buildingId))
    .where(and(...where))
    .orderBy(desc(doorEvents.occurredAt), desc(doorEvents.id))
    .limit(q.pageSize)
    .offset((q.page - 1) * q.pageSize);
  const total = db.select({ n: count() }).from(doorEvents).where(and(...where));
  return paginate(
    rows,
    total,
    (r): DoorLogEntry => ({
      ...doorEventView(r.event),
      deviceName: r.deviceName,
      relayName: r.relays?.[r.event.relay - 1]?.name ?? null,
      apartment: r.event.apartmentId && r.apartmentNumber !== null ? { id: r.event.apartmentId, number: r.apartmentNumber, name: r.apartmentName, building: r.building } : null,
    }),
    q.page,
    q.pageSize,
  );
}
