import { and, count, desc, eq, gte, inArray, lt, or, type SQL } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { devices } from '../devices/tables.js';
import { apartments, buildings } from '../directory/tables.js';
import { paginate, type Page } from '../shared/pagination.js';
import { appStations, calls, type CallOutcome } from './tables.js';

// A site's calls as installers read them: filtered like the door log, with the names of the stations and
// the apartment beside their numbers.

export interface CallFilter {
  /** A SIP number that called or answered. */
  station?: string | undefined;
  apartmentId?: string | undefined;
  outcome?: CallOutcome | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
}

export interface CallView {
  id: string;
  callId: string;
  caller: string;
  callerName: string | null;
  dialled: string;
  apartmentId: string | null;
  apartment: { id: string; number: string; name: string | null; building: string | null } | null;
  answeredBy: string | null;
  answeredByName: string | null;
  startedAt: string;
  answeredAt: string | null;
  endedAt: string | null;
  outcome: CallOutcome;
  status: number | null;
  reason: string | null;
  ixgStation: string | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The names of SIP numbers: devices' and app stations'. */
async function stationNames(db: Db, numbers: string[]): Promise<Map<string, string>> {
  if (!numbers.length) return new Map();
  const [d, a] = await Promise.all([
    db.select({ n: devices.sipNumber, name: devices.name }).from(devices).where(inArray(devices.sipNumber, numbers)),
    db.select({ n: appStations.sipNumber, name: appStations.name }).from(appStations).where(inArray(appStations.sipNumber, numbers)),
  ]);
  return new Map([...d, ...a].map((r) => [r.n, r.name]));
}

export async function listCallLog(db: Db, siteId: string, q: CallFilter & { page: number; pageSize: number }): Promise<Page<CallView>> {
  const where: (SQL | undefined)[] = [
    eq(calls.siteId, siteId),
    q.station ? or(eq(calls.caller, q.station), eq(calls.answeredBy, q.station)) : undefined,
    q.apartmentId ? eq(calls.apartmentId, q.apartmentId) : undefined,
    q.outcome ? eq(calls.outcome, q.outcome) : undefined,
    q.from ? gte(calls.startedAt, q.from) : undefined,
    q.to ? lt(calls.startedAt, q.to) : undefined,
  ];
  const rows = await db
    .select({ call: calls, apartmentNumber: apartments.number, apartmentName: apartments.name, building: buildings.name })
    .from(calls)
    .leftJoin(apartments, eq(apartments.id, calls.apartmentId))
    .leftJoin(buildings, eq(buildings.id, apartments.buildingId))
    .where(and(...where))
    .orderBy(desc(calls.startedAt), desc(calls.id))
    .limit(q.pageSize)
    .offset((q.page - 1) * q.pageSize);
  const names = await stationNames(db, [...new Set(rows.flatMap((r) => [r.call.caller, r.call.answeredBy ?? '']).filter(Boolean))]);
  return paginate(
    Promise.resolve(rows),
    db.select({ n: count() }).from(calls).where(and(...where)),
    ({ call: c, apartmentNumber, apartmentName, building }): CallView => ({
      id: c.id,
      callId: c.callId,
      caller: c.caller,
      callerName: names.get(c.caller) ?? null,
      dialled: c.dialled,
      apartmentId: c.apartmentId,
      apartment: c.apartmentId && apartmentNumber !== null ? { id: c.apartmentId, number: apartmentNumber, name: apartmentName, building } : null,
      answeredBy: c.answeredBy,
      answeredByName: c.answeredBy ? (names.get(c.answeredBy) ?? null) : null,
      startedAt: c.startedAt.toISOString(),
      answeredAt: iso(c.answeredAt),
      endedAt: iso(c.endedAt),
      outcome: c.outcome,
      status: c.status,
      reason: c.reason,
      ixgStation: c.ixgStation,
    }),
    q.page,
    q.pageSize,
  );
}
