import { createHash } from 'node:crypto';
import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db, Tx } from '../db/client.js';
import { sites } from '../directory/tables.js';
import { emitEvents } from '../events/outbox.js';
import { deviceFacts, sipAccountOf } from '../devices/queries.js';
import { devices } from '../devices/tables.js';
import type { DirectoryService } from '../directory/service.js';
import type { Page } from '../shared/pagination.js';
import type { AppStations } from './app-stations.js';
import { ixgCallPlan, ixgDoorRelease, type IxgCallTarget, type IxgDoorReleaseAnswer } from './ixg-calls.js';
import { planLine, routeCall, type RoutePlan, type Station } from './routing.js';
import { DoorEvents, type DoorEventOutcome, type DoorOpened } from './door-events.js';
import { listCallLog, type CallFilter, type CallView } from './call-log.js';
import { listDoorLog, type DoorLogEntry, type DoorLogFilter, type DoorLogScope } from './door-log.js';
import { notFound } from '../shared/errors.js';
import { appStations, calls, sipRegistrations, type CallOutcome } from './tables.js';

/** A SIP account as the back end knows it: a device or an app station, with where it is placed. */
interface Account {
  station: Station;
  siteId: string | null;
}

export interface SipState {
  status: 'registered' | 'unregistered';
  lastRegisteredAt: string | null;
}


const iso = (d: Date | null) => (d ? d.toISOString() : null);
const SIP_NUMBER = /^[0-9]{10}$/;

/**
 * The calls domain's service: Kamailio's back end (credentials, routes, registrations, call progress)
 * and the records installers read (calls, door events, SIP state).
 */
export class CallService {
  /** Door events: what door phones report they opened, and what of it the cloud verified. */
  readonly doorEvents: DoorEvents;

  constructor(
    private readonly db: Db,
    private readonly directory: DirectoryService,
    private readonly apps: Pick<AppStations, 'account'>,
    /** The digest realm (the SIP domain); a getter, as the SIP server may start after this service. */
    private readonly realm: () => string,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.doorEvents = new DoorEvents(db, directory, now);
  }

  private async account(sipNumber: string): Promise<Account | null> {
    const device = await sipAccountOf(this.db, sipNumber);
    if (device) {
      const place = (await this.directory.of([device.mac])).get(device.mac);
      return {
        station: { sipNumber, kind: 'device', type: device.type, buildingId: place?.buildingId ?? null, apartmentId: place?.apartmentId ?? null },
        siteId: place?.siteId ?? null,
      };
    }
    const app = await this.apps.account(sipNumber);
    if (!app) return null;
    return { station: { sipNumber, kind: 'app', type: 'app', buildingId: null, apartmentId: app.apartmentId }, siteId: app.siteId };
  }

  /** The HA1 (MD5 of user:realm:password) Kamailio checks a digest against; null: no such account. */
  async credentials(username: string): Promise<string | null> {
    if (!SIP_NUMBER.test(username)) return null;
    // Every REGISTER and INVITE asks: the password alone, without the placement routing needs.
    const password = (await sipAccountOf(this.db, username))?.password ?? (await this.apps.account(username))?.password;
    if (!password) return null;
    return createHash('md5').update(`${username}:${this.realm()}:${password}`).digest('hex');
  }

  /**
   * Kamailio saved (expires > now) or removed (expires 0) an account's registration. Its workers report in
   * parallel, so a report older than the one recorded (by Kamailio's clock) changes nothing.
   */
  async registered(r: { number: string; expiresAt: Date | null; transport: string | null; source: string | null; userAgent: string | null; reportedAt: string }): Promise<void> {
    const now = this.now();
    const expiresAt = r.expiresAt ?? now;
    const registeredNow = expiresAt.getTime() > now.getTime();
    // Kamailio's "seconds.microseconds", kept to the microsecond (a JavaScript Date has milliseconds).
    const [seconds, micros = '0'] = r.reportedAt.split('.');
    const reportedAt = sql`to_timestamp(${Number(seconds)}) + make_interval(secs => ${Number(micros.padEnd(6, '0'))}::double precision / 1000000)`;
    await this.db
      .insert(sipRegistrations)
      .values({ sipNumber: r.number, expiresAt, lastRegisteredAt: registeredNow ? now : null, transport: r.transport, source: r.source, userAgent: r.userAgent, reportedAt, updatedAt: now })
      .onConflictDoUpdate({
        target: sipRegistrations.sipNumber,
        set: {
          expiresAt,
          lastRegisteredAt: registeredNow ? now : sql`${sipRegistrations.lastRegisteredAt}`,
          transport: r.transport,
          source: r.source,
          userAgent: r.userAgent,
          reportedAt,
          updatedAt: now,
        },
        setWhere: sql`${sipRegistrations.reportedAt} <= excluded.reported_at`,
      });
  }

  /** Each view with its SIP registration as `sipStatus` and `sipLastRegisteredAt` (lists of devices and app stations). */
  async withSipState<T extends { sipNumber: string }>(views: T[]): Promise<(T & { sipStatus: SipState['status']; sipLastRegisteredAt: string | null })[]> {
    const states = await this.sipStates(views.map((v) => v.sipNumber));
    return views.map((v) => {
      const s = states.get(v.sipNumber)!;
      return { ...v, sipStatus: s.status, sipLastRegisteredAt: s.lastRegisteredAt };
    });
  }

  /** Registered or not, and the last registration, of each SIP number. */
  async sipStates(numbers: string[]): Promise<Map<string, SipState>> {
    const states = new Map<string, SipState>(numbers.map((n) => [n, { status: 'unregistered', lastRegisteredAt: null }]));
    if (!numbers.length) return states;
    const now = this.now().getTime();
    const rows = await this.db.select().from(sipRegistrations).where(inArray(sipRegistrations.sipNumber, numbers));
    for (const r of rows) states.set(r.sipNumber, { status: r.expiresAt.getTime() > now ? 'registered' : 'unregistered', lastRegisteredAt: iso(r.lastRegisteredAt) });
    return states;
  }

  /** The stations placed in these apartments: their devices and app stations. */
  private async stationsOf(apartmentIds: string[], placements: { mac: string; buildingId: string | null; apartmentId: string | null }[]): Promise<Station[]> {
    if (!apartmentIds.length) return [];
    const where = new Map(placements.map((p) => [p.mac, p]));
    const [facts, apps] = await Promise.all([
      deviceFacts(this.db, [...where.keys()]),
      this.db.select({ sipNumber: appStations.sipNumber, apartmentId: appStations.apartmentId }).from(appStations).where(inArray(appStations.apartmentId, apartmentIds)),
    ]);
    return [
      ...facts.map((d): Station => ({ sipNumber: d.sipNumber, kind: 'device', type: d.type, buildingId: where.get(d.mac)?.buildingId ?? null, apartmentId: where.get(d.mac)?.apartmentId ?? null })),
      ...apps.map((a): Station => ({ sipNumber: a.sipNumber, kind: 'app', type: 'app', buildingId: null, apartmentId: a.apartmentId })),
    ];
  }

  /**
   * The plan for one call from the site's parts it touches: a SIP number's station (which must be of the
   * caller's site), or the apartments with the dialled number and their stations.
   */
  private async plan(caller: Account & { siteId: string }, dialled: string): Promise<RoutePlan> {
    const own = caller.station.apartmentId ? [caller.station.apartmentId] : [];
    if (SIP_NUMBER.test(dialled)) {
      const callee = await this.account(dialled);
      // Another site's station is as unknown as no station: nothing of another installer is reachable.
      if (!callee || callee.siteId !== caller.siteId) return { action: 'refuse', status: 404, reason: 'Not Found' };
      // A gateway's number names no IXG station: calls to IXG stations are the IXG system's own.
      if (callee.station.type === 'ixgw') return { action: 'refuse', status: 403, reason: 'IXG stations are called in the IXG system' };
      const directory = await this.directory.callDirectory(caller.siteId, { apartmentNumber: null, apartmentIds: [...own, ...(callee.station.apartmentId ? [callee.station.apartmentId] : [])] });
      if (!directory) return { action: 'refuse', status: 404, reason: 'Not Found' };
      return routeCall(caller.station, dialled, { directory, stations: [caller.station, callee.station] });
    }
    const directory = await this.directory.callDirectory(caller.siteId, { apartmentNumber: dialled.slice(0, 12), apartmentIds: own });
    if (!directory) return { action: 'refuse', status: 404, reason: 'Not Found' };
    const dialledApartments = directory.apartments.filter((a) => a.number === dialled).map((a) => a.id);
    const stations = await this.stationsOf(dialledApartments, directory.placements.filter((p) => p.apartmentId !== null && dialledApartments.includes(p.apartmentId)));
    return routeCall(caller.station, dialled, { directory, stations: [caller.station, ...stations.filter((s) => s.sipNumber !== caller.station.sipNumber)] });
  }

  /**
   * What a call reaches, for Kamailio; the call is recorded (refused ones too). An IXG gateway's call names
   * the IXG station it places it for (`ixg`, from X-IXG-Station and X-IXG-Building); other callers' are ignored.
   */
  async route(callerNumber: string, dialled: string, callId: string, ixg: IxgCallTarget = {}): Promise<{ plan: RoutePlan; line: string }> {
    const caller = await this.account(callerNumber);
    let plan: RoutePlan;
    let siteId: string | null = null;
    const gateway = caller?.station.type === 'ixgw';
    if (!caller) plan = { action: 'refuse', status: 403, reason: 'Unknown caller' };
    else if (!caller.siteId) plan = { action: 'refuse', status: 403, reason: 'Caller not placed in a site' };
    else {
      siteId = caller.siteId;
      plan = gateway ? await ixgCallPlan(this.db, caller.siteId, dialled, ixg) : await this.plan({ ...caller, siteId: caller.siteId }, dialled);
    }
    const refusal = plan.action === 'refuse' ? plan : null;
    const refused = refusal !== null;
    const now = this.now();
    await this.db
      .insert(calls)
      .values({
        callId,
        siteId,
        caller: callerNumber.slice(0, 10),
        dialled: dialled.slice(0, 64),
        apartmentId: plan.apartmentId ?? null,
        startedAt: now,
        endedAt: refused ? now : null,
        outcome: refusal ? (refusal.status === 480 ? 'no-answer' : 'refused') : 'ringing',
        status: refusal?.status ?? null,
        reason: refusal?.reason ?? null,
        ixgStation: gateway && ixg.station && /^[0-9]{1,8}$/.test(ixg.station) ? ixg.station : null,
      })
      // A re-sent INVITE (new transaction, same Call-ID) keeps the first record.
      .onConflictDoNothing({ target: calls.callId });
    return { plan, line: planLine(plan) };
  }

  /** Kamailio's report of a call's progress. */
  async callEvent(e: { event: 'answered' | 'ended' | 'failed'; callId: string; by?: string | undefined; status?: number | undefined }): Promise<void> {
    const now = this.now();
    if (e.event === 'answered') {
      // The first answer wins: parallel branches may both answer before the others are cancelled.
      await this.db
        .update(calls)
        .set({ answeredAt: now, answeredBy: e.by && /^[0-9]{10}$/.test(e.by) ? e.by : null, outcome: 'answered' })
        .where(and(eq(calls.callId, e.callId), isNull(calls.answeredAt), isNull(calls.endedAt)));
    } else if (e.event === 'ended') {
      const ended = await this.db.transaction(async (tx) => {
        const [row] = await tx.update(calls).set({ endedAt: now, outcome: 'completed' }).where(and(eq(calls.callId, e.callId), isNull(calls.endedAt), sql`${calls.answeredAt} is not null`)).returning();
        if (row) await this.callEnded(tx, row);
        return row;
      });
      if (ended) await this.doorEvents.recordUnopened(ended);
    } else {
      const status = e.status ?? 500;
      const outcome: CallOutcome = status === 487 ? 'cancelled' : status === 486 || status === 600 || status === 603 ? 'busy' : status === 408 || status === 480 ? 'no-answer' : 'failed';
      await this.db.transaction(async (tx) => {
        const [row] = await tx.update(calls).set({ endedAt: now, outcome, status }).where(and(eq(calls.callId, e.callId), isNull(calls.endedAt), isNull(calls.answeredAt))).returning();
        if (row) await this.callEnded(tx, row);
      });
    }
  }

  /** `call.ended` for integrators, in the transaction that ended the call. */
  private async callEnded(tx: Tx, c: typeof calls.$inferSelect): Promise<void> {
    if (!c.siteId) return;
    const [site] = await tx.select({ installerId: sites.installerId }).from(sites).where(eq(sites.id, c.siteId));
    const data = { callId: c.callId, siteId: c.siteId, caller: c.caller, dialled: c.dialled, apartmentId: c.apartmentId, answeredBy: c.answeredBy, outcome: c.outcome, status: c.status, startedAt: c.startedAt.toISOString(), answeredAt: iso(c.answeredAt), endedAt: iso(c.endedAt), ixgStation: c.ixgStation };
    await emitEvents(tx, [{ type: 'call.ended', installerId: site?.installerId ?? null, siteId: c.siteId, data, at: c.endedAt ?? new Date() }]);
  }

  async listCalls(principal: Principal, siteId: string, q: CallFilter & { page: number; pageSize: number }): Promise<Page<CallView>> {
    await this.directory.readableSite(principal, siteId);
    return listCallLog(this.db, siteId, q);
  }


  /** An IXG gateway asks whether the app that answered its call for `station` may release that station's door. */
  ixgDoorRelease(mac: string, q: { callId: string; station: string }): Promise<IxgDoorReleaseAnswer> {
    return ixgDoorRelease(this.db, mac, q);
  }

  /** Records a door phone's report that a relay opened, checked against what the cloud knows (DoorEvents). */
  recordDoorEvent(mac: string, e: DoorOpened): Promise<DoorEventOutcome> {
    return this.doorEvents.record(mac, e);
  }

  /** The door log of a site, a device or an apartment the caller may read, filtered, with names. */
  async listDoorLog(principal: Principal, scope: DoorLogScope, q: DoorLogFilter & { page: number; pageSize: number }): Promise<Page<DoorLogEntry>> {
    if ('siteId' in scope) await this.directory.readableSite(principal, scope.siteId);
    else if ('apartmentId' in scope) await this.directory.apartmentFor(this.db, principal, scope.apartmentId);
    else {
      // As the device list shows it: the installer's (any for a distributor), in a property manager's sites.
      const [device] = await deviceFacts(this.db, [scope.mac]);
      const place = device && principal.sites ? (await this.directory.of([scope.mac])).get(scope.mac) : undefined;
      const visible = !!device && (principal.role === 'distributor' || device.installerId === principal.accountId) && (!principal.sites || (!!place && principal.sites.includes(place.siteId)));
      if (!visible) throw notFound('device', { mac: scope.mac });
      // Only the device's history since it was bound to this installer, and for a property manager only in
      // its sites: a MAC bound again, or a device moved between sites, does not show another's door log.
      const [bound] = await this.db.select({ at: devices.createdAt }).from(devices).where(eq(devices.mac, scope.mac));
      return listDoorLog(this.db, { ...scope, since: bound!.at, sites: principal.sites }, q);
    }
    return listDoorLog(this.db, scope, q);
  }
}
