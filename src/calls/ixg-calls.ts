import { and, eq } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import { apartments, buildings } from '../directory/tables.js';
import { ixgApps, ixgStations } from '../ixg/tables.js';
import { DomainError, forbidden } from '../shared/errors.js';
import type { RoutePlan } from './routing.js';
import { appStations, calls } from './tables.js';

// Calls of an IXG site (docs/device-protocol.md, "IXG calls"): its IXGW-(T)GW gateway places a station's
// call to a unit's apps, naming the station; an app's door release reaches the station through the gateway,
// which asks the cloud first whether the app that answered may release that station's door.

/** What the gateway's INVITE names besides the unit dialled (X-IXG-Station, X-IXG-Building). */
export interface IxgCallTarget {
  station?: string | undefined;
  building?: string | undefined;
}

const STATION = /^[0-9]{1,8}$/;
const BUILDING = /^[0-9]{1,3}$/;
const UNIT = /^[0-9]{1,6}$/;
const refuse = (status: number, reason: string, apartmentId?: string): RoutePlan => ({ action: 'refuse', status, reason, ...(apartmentId ? { apartmentId } : {}) });

/**
 * The plan for a call the gateway places: the dialled unit's app stations ring at once. The unit is looked
 * for in the named building, else in the station's building, else in the whole site (two: 485). The IXG
 * system's own call settings chose the unit; its IXG stations are not ours to ring.
 */
export async function ixgCallPlan(db: Db, siteId: string, dialled: string, target: IxgCallTarget): Promise<RoutePlan> {
  if (!target.station || !STATION.test(target.station)) return refuse(400, 'Name the IXG station (X-IXG-Station)');
  if (target.building !== undefined && !BUILDING.test(target.building)) return refuse(400, 'Bad X-IXG-Building');
  if (!UNIT.test(dialled)) return refuse(404, 'Not Found');
  const [station] = await db.select().from(ixgStations).where(and(eq(ixgStations.siteId, siteId), eq(ixgStations.number, target.station)));
  if (!station) return refuse(404, 'No such IXG station');
  const units = await db
    .select({ id: apartments.id, buildingId: apartments.buildingId, building: buildings.ixgNumber })
    .from(apartments)
    .innerJoin(buildings, eq(buildings.id, apartments.buildingId))
    .where(and(eq(apartments.siteId, siteId), eq(apartments.number, dialled)));
  let candidates = target.building !== undefined ? units.filter((u) => u.building === target.building) : units.filter((u) => u.buildingId === station.buildingId);
  if (!candidates.length && target.building === undefined) candidates = units;
  if (!candidates.length) return refuse(404, 'Not Found');
  if (candidates.length > 1) return refuse(485, 'Ambiguous');
  const unit = candidates[0]!;
  const apps = await db.select({ sipNumber: appStations.sipNumber }).from(appStations).where(eq(appStations.apartmentId, unit.id));
  if (!apps.length) return refuse(480, 'Nobody to ring', unit.id);
  return { action: 'ring', stepTimeoutSeconds: 0, steps: [apps.map((a) => a.sipNumber).sort()], apartmentId: unit.id };
}

/** The gateway's question before it releases a station's door for an app (POST /ixg/{MAC}/door-release). */
export interface IxgDoorReleaseAnswer {
  allowed: true;
  callId: string;
  station: string;
  /** The app station that answered the call (its SIP number): who releases the door. */
  by: string;
  /** Its app listing in the IXG settings. */
  app: string;
}

/**
 * Whether the app that answered the gateway's call for `station` may release that station's door: the
 * call is this gateway's, placed for that station, answered and not ended, and the answering app's
 * listing grants door release for the station. Refused with the reason (403 `door_release_not_allowed`).
 */
export async function ixgDoorRelease(db: Db, mac: string, q: { callId: string; station: string }): Promise<IxgDoorReleaseAnswer> {
  const refused = (reason: string) => new DomainError('forbidden', 'door_release_not_allowed', `door release refused: ${reason}`, { callId: q.callId, station: q.station });
  const [gateway] = await deviceFacts(db, [mac]);
  if (!gateway || gateway.type !== 'ixgw') throw forbidden('only an IXGW-(T)GW gateway asks for IXG door release');
  const [call] = await db.select().from(calls).where(eq(calls.callId, q.callId)).limit(1);
  if (!call || call.caller !== gateway.sipNumber) throw refused('no call of this gateway has this Call-ID');
  if (call.ixgStation !== q.station) throw refused(`the call was placed for station ${call.ixgStation ?? '(none)'}`);
  if (!call.answeredAt || !call.answeredBy || call.endedAt) throw refused('the call is not up');
  const [app] = await db.select({ ixgApp: appStations.ixgApp, siteId: appStations.siteId }).from(appStations).where(eq(appStations.sipNumber, call.answeredBy)).limit(1);
  if (!app?.ixgApp || app.siteId !== call.siteId) throw refused('the call was not answered by an app of this IXG site');
  const [listing] = await db.select({ addressBook: ixgApps.addressBook }).from(ixgApps).where(and(eq(ixgApps.siteId, app.siteId), eq(ixgApps.number, app.ixgApp)));
  if (!listing?.addressBook.some((e) => e.station === q.station && e.doorRelease)) throw refused(`app ${app.ixgApp} has no door release for station ${q.station}`);
  return { allowed: true, callId: q.callId, station: q.station, by: call.answeredBy, app: app.ixgApp };
}
