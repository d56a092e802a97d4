import { and, eq, inArray, isNotNull, lte, sql } from 'drizzle-orm';
import type { Database, Tx } from '../db/client.js';
import { devices } from '../devices/tables.js';
import { placements } from '../directory/tables.js';
import type { Logger } from '../logger.js';
import { emitEvents, OutboxReader, type NewOutboundEvent, type OutboxRow } from './outbox.js';
import { outboundEvents, presenceEvents, presenceState } from './tables.js';

// Presence without flapping (issue 19, part 5): the presence outbox becomes device.online / device.offline
// for integrators, with a grace that hides a reboot, one device.flapping (and a summary) instead of a storm,
// and one site.outage when most of a site goes at once.

export interface PresencePolicy {
  /** device.offline only after this long without a reconnect. */
  graceMs: number;
  /** More than `flapCount` offline transitions within `flapWindowMs` is flapping. */
  flapCount: number;
  flapWindowMs: number;
  /** A site.outage: at least this many of the site's devices, and at least `outageShare` of them, offline within `outageWindowMs`. */
  outageMinDevices: number;
  outageShare: number;
  outageWindowMs: number;
}

type State = typeof presenceState.$inferSelect;

export class PresenceFollower {
  /** The clock grace and windows are measured by (tests move it). */
  now: () => Date = () => new Date();
  readonly reader: OutboxReader;

  constructor(
    private readonly opts: { database: Database; log: Logger; policy: PresencePolicy; mayRun?: () => Promise<boolean>; pollMs?: number },
  ) {
    this.reader = new OutboxReader({
      database: opts.database,
      log: opts.log,
      table: 'presence_events',
      name: 'presence',
      handle: (rows, tx) => this.handle(rows, tx),
      tick: (tx) => this.tick(tx),
      ...(opts.mayRun ? { mayRun: opts.mayRun } : {}),
      pollMs: opts.pollMs ?? 250,
    });
  }

  start(): void {
    this.reader.start();
  }

  stop(): Promise<void> {
    return this.reader.stop();
  }

  /** One pass now (tests: after moving the clock). */
  pass(): Promise<boolean> {
    return this.reader.pass();
  }

  private async owners(tx: Tx, macs: string[]): Promise<Map<string, { installerId: string; siteId: string | null }>> {
    if (!macs.length) return new Map();
    const rows = await tx.select({ mac: devices.mac, installerId: devices.installerId, siteId: placements.siteId }).from(devices).leftJoin(placements, eq(placements.mac, devices.mac)).where(inArray(devices.mac, macs));
    return new Map(rows.map((r) => [r.mac, { installerId: r.installerId, siteId: r.siteId }]));
  }

  private async handle(rows: OutboxRow[], tx: Tx): Promise<void> {
    const { policy } = this.opts;
    const macs = [...new Set(rows.map((r) => r.mac as string))];
    await tx.insert(presenceState).values(macs.map((mac) => ({ mac }))).onConflictDoNothing();
    const states = new Map((await tx.select().from(presenceState).where(inArray(presenceState.mac, macs)).orderBy(presenceState.mac).for('update')).map((s) => [s.mac, s]));
    const owners = await this.owners(tx, macs);
    const out: NewOutboundEvent[] = [];
    const now = this.now();
    for (const r of rows) {
      const mac = r.mac as string;
      const s = states.get(mac)!;
      const at = new Date(r.at as string | Date);
      const owner = owners.get(mac);
      const event = (type: NewOutboundEvent['type'], data: Record<string, unknown>): NewOutboundEvent => ({ type, installerId: owner?.installerId ?? null, siteId: owner?.siteId ?? null, mac, at, data: { mac, siteId: owner?.siteId ?? null, ...data } });
      // The grace and the windows run on this follower's clock from when it learned of the change.
      if (r.status === 'offline') {
        if (!s.online && s.lastChangeAt) continue;
        const recent = [...s.recent, now.toISOString()].filter((t) => now.getTime() - new Date(t).getTime() <= policy.flapWindowMs);
        Object.assign(s, { online: false, offlineAt: now, lastChangeAt: now, recent });
        if (!s.flappingSince && recent.length > policy.flapCount) {
          Object.assign(s, { flappingSince: now, flaps: recent.length, offlineAt: null });
          out.push(event('device.flapping', { state: 'started', transitions: recent.length, windowSeconds: policy.flapWindowMs / 1000 }));
        } else if (s.flappingSince) Object.assign(s, { flaps: s.flaps + 1, offlineAt: null });
      } else {
        if (s.online) continue;
        const pending = s.offlineAt !== null;
        Object.assign(s, { online: true, offlineAt: null, lastChangeAt: now });
        // Back within the grace (a reboot, a new session replacing the last): nothing to tell.
        if (pending || s.flappingSince || s.announced === 'online') continue;
        s.announced = 'online';
        out.push(event('device.online', { since: at.toISOString() }));
      }
    }
    for (const s of states.values()) await this.save(tx, s);
    await tx.delete(presenceEvents).where(inArray(presenceEvents.id, rows.map((r) => r.id)));
    await emitEvents(tx, out);
  }

  private save(tx: Tx, s: State) {
    const { mac, ...rest } = s;
    return tx.update(presenceState).set(rest).where(eq(presenceState.mac, mac));
  }

  /** The timers: offline past its grace, flapping that calmed down, sites that went out together. */
  private async tick(tx: Tx): Promise<void> {
    const { policy } = this.opts;
    const now = this.now();
    const due = await tx
      .select()
      .from(presenceState)
      .where(and(isNotNull(presenceState.offlineAt), lte(presenceState.offlineAt, new Date(now.getTime() - policy.graceMs))))
      .orderBy(presenceState.mac)
      .limit(2000)
      .for('update', { skipLocked: true });
    const calm = await tx
      .select()
      .from(presenceState)
      .where(and(isNotNull(presenceState.flappingSince), lte(presenceState.lastChangeAt, new Date(now.getTime() - policy.flapWindowMs))))
      .limit(500)
      .for('update', { skipLocked: true });
    if (!due.length && !calm.length) return;
    const owners = await this.owners(tx, [...due, ...calm].map((s) => s.mac));
    const out: NewOutboundEvent[] = [];
    const event = (s: State, type: NewOutboundEvent['type'], data: Record<string, unknown>): NewOutboundEvent => {
      const owner = owners.get(s.mac);
      return { type, installerId: owner?.installerId ?? null, siteId: owner?.siteId ?? null, mac: s.mac, at: now, data: { mac: s.mac, siteId: owner?.siteId ?? null, ...data } };
    };
    for (const s of due) {
      out.push(event(s, 'device.offline', { since: s.offlineAt!.toISOString(), graceSeconds: policy.graceMs / 1000 }));
      Object.assign(s, { announced: 'offline', offlineAt: null });
      await this.save(tx, s);
    }
    for (const s of calm) {
      out.push(event(s, 'device.flapping', { state: 'ended', transitions: s.flaps, since: s.flappingSince!.toISOString(), online: s.online }));
      const announce = s.online ? 'online' : 'offline';
      if (s.announced !== announce) out.push(event(s, announce === 'online' ? 'device.online' : 'device.offline', { since: s.lastChangeAt?.toISOString() ?? now.toISOString() }));
      Object.assign(s, { flappingSince: null, flaps: 0, recent: [], announced: announce });
      await this.save(tx, s);
    }
    out.push(...(await this.outages(tx, due, owners, now)));
    await emitEvents(tx, out);
  }

  /** One site.outage per site when most of it went offline within the window (and none told in the last hour). */
  private async outages(tx: Tx, due: State[], owners: Map<string, { installerId: string; siteId: string | null }>, now: Date): Promise<NewOutboundEvent[]> {
    const { policy } = this.opts;
    const sites = new Set(due.map((s) => owners.get(s.mac)?.siteId).filter((id): id is string => !!id));
    const out: NewOutboundEvent[] = [];
    for (const siteId of sites) {
      const [counts] = (
        (await tx.execute(sql`
          SELECT count(*)::int AS total,
                 count(*) FILTER (WHERE s.announced = 'offline' AND s.online = false AND s.last_change_at >= ${new Date(now.getTime() - policy.graceMs - policy.outageWindowMs)})::int AS gone,
                 min(s.last_change_at) FILTER (WHERE s.announced = 'offline' AND s.online = false) AS since
          FROM device_placements p LEFT JOIN presence_state s ON s.mac = p.mac WHERE p.site_id = ${siteId}`)) as unknown as { rows: { total: number; gone: number; since: string | Date | null }[] }
      ).rows;
      if (!counts || counts.gone < policy.outageMinDevices || counts.gone < counts.total * policy.outageShare) continue;
      const [told] = await tx
        .select({ id: outboundEvents.id })
        .from(outboundEvents)
        .where(and(eq(outboundEvents.type, 'site.outage'), eq(outboundEvents.siteId, siteId), sql`${outboundEvents.at} > ${new Date(now.getTime() - 3600_000)}`))
        .limit(1);
      if (told) continue;
      const installerId = owners.get(due.find((s) => owners.get(s.mac)?.siteId === siteId)!.mac)!.installerId;
      out.push({ type: 'site.outage', installerId, siteId, at: now, data: { siteId, offline: counts.gone, devices: counts.total, since: counts.since ? new Date(counts.since).toISOString() : null } });
    }
    return out;
  }
}

