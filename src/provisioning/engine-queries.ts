import { and, asc, eq, ne, sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { auditLog, FINISHED_LIST, jobs, UNFINISHED, type AutopLine } from './tables.js';

const p = sql.placeholder;

/**
 * The engine's hot statements, built once and prepared (named) on each connection: every job runs
 * several of them, and building a query anew each time was the service's largest source of CPU and
 * garbage. Values go in as placeholders; `sql` wrappers pass them to the driver as they are.
 */
export function engineQueries(db: Db) {
  // What finishing a job writes, with or without the condition that it is no upgrade.
  const finishing = {
    state: sql`${p('state')}`,
    error: sql`${p('error')}::jsonb`,
    progress: sql`COALESCE(${p('progress')}::int, ${jobs.progress})`,
    finishedAt: sql`now()`,
    updatedAt: sql`now()`,
    deadlineAt: null,
  };
  return {
    /** The job and the id of the job heading its device's queue, in one round trip. */
    loadWithHead: db
      .select({
        row: jobs,
        // The outer row is named explicitly: an interpolated column renders unqualified in a select list
        // and would bind to the subquery's own table.
        headId: sql<string | null>`(SELECT h.id FROM jobs h WHERE h.mac = "jobs"."mac" AND h.state NOT IN (${FINISHED_LIST}) ORDER BY h.seq LIMIT 1)`,
      })
      .from(jobs)
      .where(eq(jobs.id, p('id')))
      .limit(1)
      .prepare('engine_load_with_head'),

    headJob: db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(eq(jobs.mac, p('mac')), UNFINISHED))
      .orderBy(asc(jobs.seq))
      .limit(1)
      .prepare('engine_head_job'),

    /** Marks a delivery, only if nobody delivered or finished the job meanwhile. */
    dispatch: db
      .update(jobs)
      .set({
        state: sql`${p('state')}`,
        attempts: sql`${p('nextAttempts')}::int`,
        deliveredAt: sql`${p('now')}::timestamptz`,
        deadlineAt: sql`${p('deadline')}::timestamptz`,
        updatedAt: sql`${p('now')}::timestamptz`,
      })
      .where(and(eq(jobs.id, p('id')), eq(jobs.attempts, p('attempts')), UNFINISHED))
      .returning({ id: jobs.id })
      .prepare('engine_dispatch'),

    /** An `accepted` or `in-progress` answer: progress and stage are kept when the answer has none. */
    progress: db
      .update(jobs)
      .set({
        state: 'in-progress',
        progress: sql`COALESCE(${p('progress')}::int, ${jobs.progress})`,
        stage: sql`COALESCE(${p('stage')}::text, ${jobs.stage})`,
        deadlineAt: sql`${p('deadline')}::timestamptz`,
        updatedAt: sql`now()`,
      })
      .where(and(eq(jobs.id, p('id')), eq(jobs.mac, p('mac')), UNFINISHED))
      .prepare('engine_progress'),

    finish: db
      .update(jobs)
      .set(finishing)
      .where(and(eq(jobs.id, p('id')), eq(jobs.mac, p('mac')), UNFINISHED))
      .returning({ id: jobs.id, batchId: jobs.batchId })
      .prepare('engine_finish'),

    /** The same, for a device's `succeeded`, which never ends an upgrade (its hello does). */
    finishUnlessUpgrade: db
      .update(jobs)
      .set(finishing)
      .where(and(eq(jobs.id, p('id')), eq(jobs.mac, p('mac')), UNFINISHED, ne(jobs.kind, 'upgrade')))
      .returning({ id: jobs.id, batchId: jobs.batchId })
      .prepare('engine_finish_unless_upgrade'),

    audit: db
      .insert(auditLog)
      .values({ actor: p('actor'), action: p('action'), mac: p('mac'), jobId: p('jobId'), batchId: p('batchId'), details: sql`${p('details')}::jsonb` })
      .prepare('engine_audit'),

    /** What a device's effective configuration is made of beside its record. */
    configSources: db
      .select({
        regular: sql<AutopLine[] | null>`(SELECT r.lines FROM regular_autop r WHERE r.mac = ${p('mac')})`,
        once: sql<{ lines?: AutopLine[] }[] | null>`(SELECT jsonb_agg(o.params ORDER BY o.seq) FROM jobs o
          WHERE o.mac = ${p('mac')} AND o.kind = 'autop-once' AND o.state NOT IN (${FINISHED_LIST}))`,
      })
      .from(sql`(SELECT 1) AS one`)
      .prepare('engine_config_sources'),

    unfinishedUpgrades: db
      .select({ id: jobs.id, mac: jobs.mac, batchId: jobs.batchId, params: jobs.params, state: jobs.state, stage: jobs.stage })
      .from(jobs)
      .where(and(eq(jobs.mac, p('mac')), eq(jobs.kind, 'upgrade'), UNFINISHED))
      .orderBy(asc(jobs.seq))
      .prepare('engine_unfinished_upgrades'),
  };
}
export type EngineQueries = ReturnType<typeof engineQueries>;
