import { and, eq, inArray, sql } from 'drizzle-orm';
import { placements } from '../directory/tables.js';
import type { JobEvent, JobEventSink } from '../provisioning/job-events.js';
import { jobs } from '../provisioning/tables.js';
import { emitEvents, type NewOutboundEvent } from './outbox.js';
import { outboundEvents } from './tables.js';

/** Kinds that deliver the configuration, and with it the directory's documents. */
const CONFIGURATION_KINDS = ['provision', 'autop', 'connect-type'];
const UNFINISHED = `state IN ('queued', 'dispatched', 'in-progress')`;

/**
 * Job lifecycle events as integrators get them (issue 19), written in the follower's transaction with its
 * cursor, so each is made exactly once: `job.finished` for every kind, `upgrade.device.finished` and
 * `upgrade.finished` for upgrades, `directory.applied` when a site's last configuration job ended.
 */
export function outboundJobSink(): JobEventSink {
  return {
    name: 'outbound-events',
    async handle(events, tx) {
      const finished = events.filter((e) => e.type === 'finished');
      if (!finished.length) return;
      const ids = [...new Set(finished.map((e) => e.jobId))];
      const macs = [...new Set(finished.map((e) => e.mac))];
      const [owners, places] = await Promise.all([
        tx.select({ id: jobs.id, installerId: jobs.installerId, params: jobs.params }).from(jobs).where(inArray(jobs.id, ids)),
        tx.select({ mac: placements.mac, siteId: placements.siteId }).from(placements).where(inArray(placements.mac, macs)),
      ]);
      const installerOf = new Map(owners.map((o) => [o.id, o.installerId]));
      const siteOf = new Map(places.map((p) => [p.mac, p.siteId]));
      const out: NewOutboundEvent[] = [];
      const body = (e: JobEvent) => ({ jobId: e.jobId, kind: e.kind, mac: e.mac, state: e.toState, error: e.error, result: e.result ?? null, attempts: e.attempts, batchId: e.batchId, finishedAt: e.at.toISOString() });
      for (const e of finished) {
        const installerId = installerOf.get(e.jobId) ?? null;
        const base = { installerId, siteId: siteOf.get(e.mac) ?? null, mac: e.mac, at: e.at };
        out.push({ ...base, type: 'job.finished', data: body(e) });
        if (e.kind === 'upgrade') out.push({ ...base, type: 'upgrade.device.finished', data: { upgradeId: e.batchId, ...body(e) } });
      }
      // An upgrade ends with its last device job; one upgrade.finished, whichever pass sees it.
      for (const upgradeId of new Set(finished.filter((e) => e.kind === 'upgrade' && e.batchId).map((e) => e.batchId!))) {
        const states = await tx.select({ state: jobs.state, n: sql<number>`count(*)::int` }).from(jobs).where(eq(jobs.batchId, upgradeId)).groupBy(jobs.state);
        if (states.some((s) => ['queued', 'dispatched', 'in-progress'].includes(s.state))) continue;
        const [told] = await tx.select({ id: outboundEvents.id }).from(outboundEvents).where(and(eq(outboundEvents.type, 'upgrade.finished'), sql`${outboundEvents.data}->>'upgradeId' = ${upgradeId}`)).limit(1);
        if (told) continue;
        const last = finished.filter((e) => e.batchId === upgradeId).at(-1)!;
        out.push({ type: 'upgrade.finished', installerId: installerOf.get(last.jobId) ?? null, at: last.at, data: { upgradeId, devices: Object.fromEntries(states.map((s) => [s.state, s.n])) } });
      }
      // A site whose configuration jobs all ended: its directory change reached every device it could.
      const sites = new Set(finished.filter((e) => CONFIGURATION_KINDS.includes(e.kind) && siteOf.has(e.mac)).map((e) => siteOf.get(e.mac)!));
      for (const siteId of sites) {
        const result = (await tx.execute(sql`
          SELECT count(*) FILTER (WHERE j.${sql.raw(UNFINISHED)})::int AS unfinished,
                 max(j.finished_at) AS latest,
                 (SELECT max(o.at) FROM outbound_events o WHERE o.type = 'directory.applied' AND o.site_id = ${siteId}) AS told
          FROM jobs j JOIN device_placements p ON p.mac = j.mac
          WHERE p.site_id = ${siteId} AND j.kind = ANY(${sql.param(CONFIGURATION_KINDS)}::text[])`)) as unknown as { rows: { unfinished: number; latest: Date | string | null; told: Date | string | null }[] };
        const state = result.rows[0];
        if (!state || state.unfinished > 0 || !state.latest) continue;
        if (state.told && new Date(state.told).getTime() >= new Date(state.latest).getTime()) continue;
        const e = finished.filter((x) => siteOf.get(x.mac) === siteId).at(-1)!;
        out.push({ type: 'directory.applied', installerId: installerOf.get(e.jobId) ?? null, siteId, at: new Date(state.latest), data: { siteId } });
      }
      await emitEvents(tx, out);
    },
  };
}
