import { and, eq, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/client.js';
import { emitEvents } from '../events/outbox.js';
import { deviceFacts, sipAccountOf } from '../devices/queries.js';
import { isEntrance } from '../devices/types.js';
import { sites } from '../directory/tables.js';
import type { DirectoryService } from '../directory/service.js';
import { ixgStations } from '../ixg/tables.js';
import { appStations, calls, doorEvents, type DoorOutcome, type DoorRequester } from './tables.js';

/** What a door phone reports on devices/{MAC}/events when a relay opened (docs/device-protocol.md). */
export interface DoorOpened {
  type: 'door-opened';
  eventId: string;
  relay: number;
  method: string;
  by?: string | undefined;
  callId?: string | undefined;
  at?: string | undefined;
  floors?: string[] | undefined;
  /** An IXG gateway's report: the IXG station whose door it released. */
  station?: string | undefined;
  /** A remote opening: the open-door command it carried out. */
  jobId?: string | undefined;
}

/**
 * How far a device's clock may be from the cloud's: an `at` further off is clamped to the window
 * [received − tolerance, received] (never later than the receipt) and shown unverified.
 */
const DOOR_EVENT_CLOCK_TOLERANCE_MS = 5 * 60_000;

/** Which fields of a door event the cloud confirmed: true checked, false not confirmed, null nothing to check. */
export interface DoorEventVerification {
  relay: boolean;
  call: boolean | null;
  by: boolean | null;
  at: boolean | null;
}

export interface DoorEventView {
  id: string;
  mac: string;
  relay: number;
  method: string;
  byStation: string | null;
  callId: string | null;
  ixgStation: string | null;
  floors: string[] | null;
  occurredAt: string;
  reportedAt: string | null;
  receivedAt: string;
  verified: DoorEventVerification;
  outcome: DoorOutcome;
  reason: string | null;
  jobId: string | null;
  requestedBy: { kind: DoorRequester; id: string } | null;
  apartmentId: string | null;
}

/** What became of a reported event: stored (a re-sent one is stored once), or refused with the reason. */
export type DoorEventOutcome = { recorded: true } | { recorded: false; refused: string };

type DoorEventRow = typeof doorEvents.$inferSelect;

export const doorEventView = (d: DoorEventRow): DoorEventView => ({
  id: d.id,
  mac: d.mac,
  relay: d.relay,
  method: d.method,
  byStation: d.byStation,
  callId: d.callId,
  ixgStation: d.ixgStation,
  floors: d.floors ?? null,
  occurredAt: d.occurredAt.toISOString(),
  reportedAt: d.reportedAt?.toISOString() ?? null,
  receivedAt: d.receivedAt.toISOString(),
  verified: {
    relay: d.relayVerified,
    call: d.callVerified,
    by: d.byVerified,
    at: d.reportedAt ? Math.abs(d.reportedAt.getTime() - d.receivedAt.getTime()) <= DOOR_EVENT_CLOCK_TOLERANCE_MS : null,
  },
  outcome: d.outcome,
  reason: d.reason,
  jobId: d.jobId,
  requestedBy: d.requester && d.requestedBy ? { kind: d.requester, id: d.requestedBy } : null,
  apartmentId: d.apartmentId,
});

/** Clamps a reported time into [received − tolerance, received]. */
function clampReported(reported: Date | null, received: Date): Date {
  if (!reported) return received;
  const t = Math.min(Math.max(reported.getTime(), received.getTime() - DOOR_EVENT_CLOCK_TOLERANCE_MS), received.getTime());
  return new Date(t);
}

/**
 * Door events: what door phones report they opened, checked against what the cloud knows. A relay the
 * device does not have is refused; everything else is stored, each claim marked verified or not, so the
 * record of a door that opened is never lost to an attribution the cloud cannot confirm.
 */
export class DoorEvents {
  /** The receive clock (tests move it). */
  now: () => Date;

  constructor(
    private readonly db: Db,
    private readonly directory: Pick<DirectoryService, 'of' | 'readableSite'>,
    now: () => Date = () => new Date(),
  ) {
    this.now = now;
  }

  async record(mac: string, e: DoorOpened): Promise<DoorEventOutcome> {
    const received = this.now();
    const [device] = await deviceFacts(this.db, [mac]);
    if (!device) return { recorded: false, refused: 'no device is bound to this MAC' };
    const place = (await this.directory.of([mac])).get(mac);
    // An IXG gateway releases its stations' doors, not relays of its own: the station must be of its upload.
    if (device.type === 'ixgw') {
      if (!e.station) return { recorded: false, refused: 'an IXG gateway names the station whose door it released (station)' };
      const [station] = place ? await this.db.select({ number: ixgStations.number }).from(ixgStations).where(and(eq(ixgStations.siteId, place.siteId), eq(ixgStations.number, e.station))) : [];
      if (!station) return { recorded: false, refused: `station ${e.station} is not in the IXG settings of the gateway's site` };
    } else if (e.relay > device.relays.length) return { recorded: false, refused: `relay ${e.relay}: the device has ${device.relays.length} relay(s)` };
    const reported = e.at ? new Date(e.at) : null;
    const occurredAt = clampReported(reported, received);
    // A remote opening confirms its attempt in the door log, which knows who asked.
    if (e.method === 'remote' && e.jobId) {
      const [attempt] = await this.db.select().from(doorEvents).where(and(eq(doorEvents.jobId, e.jobId), eq(doorEvents.mac, mac))).limit(1);
      if (attempt) {
        await this.db.transaction(async (tx) => {
          const [row] = await tx
          .update(doorEvents)
          .set({
            eventId: e.eventId,
            relayVerified: e.relay === attempt.relay,
            byStation: e.by ?? null,
            byVerified: e.by ? e.by === attempt.requestedBy : null,
            occurredAt,
            reportedAt: reported,
            receivedAt: received,
            outcome: 'opened',
            reason: null,
          })
          .where(eq(doorEvents.id, attempt.id))
          .returning();
          // One door.opened per opening: a re-sent report finds the device's event id on the row already.
          if (attempt.eventId.startsWith('job-')) await this.doorOpened(tx, row!, device.installerId);
        });
        return { recorded: true };
      }
    }
    const { call, by } = await this.checkCall(device.sipNumber, e, occurredAt, received);
    // The apartment it is of: the app's or station's that opened (a verified party only), else the device's own.
    const apartmentId = (by && e.by ? await this.apartmentOf(e.by) : null) ?? place?.apartmentId ?? null;
    await this.db.transaction(async (tx) => {
      if (e.callId && call) await lockCall(tx, e.callId);
      const [inserted] = await tx
        .insert(doorEvents)
        .values({
          siteId: place?.siteId ?? null,
          mac,
          relay: e.relay,
          relayVerified: true,
          method: e.method,
          byStation: e.by ?? null,
          byVerified: by,
          callId: e.callId ?? null,
          ixgStation: device.type === 'ixgw' ? (e.station ?? null) : null,
          floors: e.floors ?? null,
          callVerified: call,
          apartmentId,
          eventId: e.eventId,
          occurredAt,
          reportedAt: reported,
          receivedAt: received,
        })
        .onConflictDoNothing({ target: [doorEvents.mac, doorEvents.eventId] })
        .returning();
      if (inserted) await this.doorOpened(tx, inserted, device.installerId);
      // A door opened in a call after all: the call is no longer one answered without opening. In the same
      // transaction, so no reader sees the opening beside its "not opened" row.
      if (e.callId && call && place) await tx.delete(doorEvents).where(and(eq(doorEvents.callId, e.callId), eq(doorEvents.outcome, 'not-opened'), eq(doorEvents.siteId, place.siteId)));
    });
    return { recorded: true };
  }

  /** `door.opened` for integrators, in the transaction that recorded the opening. */
  private async doorOpened(tx: Tx, d: typeof doorEvents.$inferSelect, installerId: string): Promise<void> {
    const data = { doorEventId: d.id, mac: d.mac, relay: d.relay, method: d.method, byStation: d.byStation, callId: d.callId, ixgStation: d.ixgStation, jobId: d.jobId, requestedBy: d.requester && d.requestedBy ? { kind: d.requester, id: d.requestedBy } : null, siteId: d.siteId, apartmentId: d.apartmentId, floors: d.floors, occurredAt: d.occurredAt.toISOString() };
    await emitEvents(tx, [{ type: 'door.opened', installerId, siteId: d.siteId, mac: d.mac, data, at: d.occurredAt }]);
  }

  /** The apartment of a SIP number: an app station's, or the apartment a device is placed in. */
  private async apartmentOf(sipNumber: string): Promise<string | null> {
    const [app] = await this.db.select({ apartmentId: appStations.apartmentId }).from(appStations).where(eq(appStations.sipNumber, sipNumber)).limit(1);
    if (app) return app.apartmentId;
    const device = await sipAccountOf(this.db, sipNumber);
    return device ? ((await this.directory.of([device.mac])).get(device.mac)?.apartmentId ?? null) : null;
  }

  /**
   * A call from a door phone (or an IXG gateway) answered and ended without a door opened in it: in the
   * door log when its site asks for them (seed 004). A door event arriving later for the call removes it.
   */
  async recordUnopened(call: typeof calls.$inferSelect): Promise<void> {
    if (!call.siteId) return;
    const [site] = await this.db.select({ log: sites.logUnopenedCalls }).from(sites).where(eq(sites.id, call.siteId));
    if (!site?.log) return;
    const caller = await sipAccountOf(this.db, call.caller);
    if (!caller || !(isEntrance(caller.type) || caller.type === 'ixgw')) return;
    await this.db.transaction(async (tx) => {
      await lockCall(tx, call.callId);
      const [opened] = await tx.select({ id: doorEvents.id }).from(doorEvents).where(eq(doorEvents.callId, call.callId)).limit(1);
      if (opened) return;
      const now = this.now();
      await tx
        .insert(doorEvents)
        .values({ siteId: call.siteId, mac: caller.mac, relay: 0, method: 'call', outcome: 'not-opened', byStation: call.answeredBy, callId: call.callId, callVerified: true, ixgStation: call.ixgStation, apartmentId: call.apartmentId, eventId: `call-${call.id}`, occurredAt: call.endedAt ?? now, receivedAt: now })
        .onConflictDoNothing({ target: [doorEvents.mac, doorEvents.eventId] });
    });
  }

  /**
   * The call claim: a call the SIP server recorded, answered, with this device as caller or answerer, and
   * the event inside it (from its answer to its end, give or take the clock tolerance); `by` the call's
   * other party. `dtmf` opens only from a call, so for it both are required: missing is unverified. (The
   * coming `remote` method will check `by` against the job that asked instead.)
   */
  private async checkCall(deviceNumber: string, e: DoorOpened, occurredAt: Date, received: Date): Promise<{ call: boolean | null; by: boolean | null }> {
    const required = e.method === 'dtmf';
    const absent = required ? false : null;
    if (!e.callId) return { call: absent, by: e.by ? false : absent };
    const [row] = await this.db.select().from(calls).where(eq(calls.callId, e.callId)).limit(1);
    const parties = row ? [row.caller, row.answeredBy] : [];
    const t = occurredAt.getTime();
    const during =
      !!row?.answeredAt && t >= row.answeredAt.getTime() - DOOR_EVENT_CLOCK_TOLERANCE_MS && t <= (row.endedAt ?? received).getTime() + DOOR_EVENT_CLOCK_TOLERANCE_MS;
    // A gateway's release must also be of the call it placed for that station.
    const call = !!row && parties.includes(deviceNumber) && during && (e.station === undefined || row.ixgStation === e.station);
    if (!e.by) return { call, by: absent };
    return { call, by: call && e.by !== deviceNumber && parties.includes(e.by) };
  }

}

/**
 * Serialises the "not opened" row of a call with an opening in it: a call that ends while its opening is
 * being recorded would otherwise keep both (each transaction missing the other's uncommitted row).
 */
async function lockCall(tx: Tx, callId: string): Promise<void> {
  await tx.execute(sql`SELECT pg_advisory_xact_lock(hashtext(${'door-call:' + callId}))`);
}
