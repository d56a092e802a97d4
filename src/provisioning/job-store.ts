import type { Database, Queryable, Statement } from '../db/client.js';
import { runIn } from '../db/client.js';
import { UNFINISHED_STATE, type AutopLine, type JobError, type JobKind, type JobState, jobs } from './tables.js';

export type JobRow = typeof jobs.$inferSelect;

/** A job to create: one command to one device. */
export interface NewJob {
  kind: JobKind;
  mac: string;
  installerId: string;
  params?: Record<string, unknown>;
  batchId?: string | null;
  /** When the job stops waiting for the device. */
  expiresAt: Date;
}

/** Who changes a job: an account, the scheduler, the engine or the device; written into the audit log. */
export interface JobActor {
  accountId: string | null;
  label: string;
}

const UNFINISHED = UNFINISHED_STATE;
const COLUMNS = `id, seq, kind, mac, installer_id, batch_id, state, progress, stage, attempts, params, error, requested_by,
  created_at, updated_at, expires_at, delivered_at, deadline_at, finished_at`;

type RawJob = Record<string, unknown>;

/** drizzle's own statements hand timestamps over as text; named statements as Date. */
const toDate = (v: unknown): Date => (v instanceof Date ? v : new Date(v as string));
const toDateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : toDate(v));

export function jobFromRow(r: RawJob): JobRow {
  return {
    id: r.id as string,
    seq: Number(r.seq),
    kind: r.kind as JobKind,
    mac: r.mac as string,
    installerId: r.installer_id as string,
    batchId: (r.batch_id as string | null) ?? null,
    state: r.state as JobState,
    progress: r.progress as number,
    stage: (r.stage as string | null) ?? null,
    attempts: r.attempts as number,
    params: (r.params as Record<string, unknown>) ?? {},
    error: (r.error as JobError | null) ?? null,
    requestedBy: (r.requested_by as string | null) ?? null,
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
    expiresAt: toDate(r.expires_at),
    deliveredAt: toDateOrNull(r.delivered_at),
    deadlineAt: toDateOrNull(r.deadline_at),
    finishedAt: toDateOrNull(r.finished_at),
  };
}

// Every state change is one statement that also writes its audit row (a data-modifying CTE), so a
// transition and its audit entry exist together or not at all, whatever is killed when.
const st = {
  create: {
    name: 'jobs_create',
    text: `WITH input AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb)
          AS x(ord int, kind text, mac text, installer_id uuid, batch_id uuid, params jsonb, expires_at timestamptz)
      ), created AS (
        INSERT INTO jobs (kind, mac, installer_id, batch_id, params, requested_by, expires_at)
        SELECT kind, mac, installer_id, batch_id, params, $2::uuid, expires_at FROM input ORDER BY ord
        RETURNING ${COLUMNS}
      ), audited AS (
        INSERT INTO audit_log (actor, action, mac, job_id, batch_id, details)
        SELECT $3, 'job.created', mac, id, batch_id, jsonb_build_object('kind', kind) || $4::jsonb FROM created
      )
      SELECT * FROM created ORDER BY seq`,
  },
  loadWithHead: {
    name: 'jobs_load_with_head',
    text: `SELECT ${COLUMNS.replace(/(\w+)/g, 'j.$1')},
        (SELECT h.id FROM jobs h WHERE h.mac = j.mac AND h.${UNFINISHED} ORDER BY h.seq LIMIT 1) AS head_id
      FROM jobs j WHERE j.id = $1`,
  },
  head: { name: 'jobs_head', text: `SELECT id FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY seq LIMIT 1` },
  dispatch: {
    name: 'jobs_dispatch',
    text: `WITH t AS (
        UPDATE jobs SET state = $2, attempts = $4, delivered_at = $5, deadline_at = $6, updated_at = $5
        WHERE id = $1 AND attempts = $3 AND state = $8
        RETURNING id, mac, batch_id
      ), a AS (
        INSERT INTO audit_log (actor, action, mac, job_id, batch_id, details)
        SELECT 'engine', $7, mac, id, batch_id, jsonb_build_object('attempt', $4::int) FROM t
      )
      SELECT id FROM t`,
  },
  progress: {
    name: 'jobs_progress',
    text: `UPDATE jobs SET state = 'in-progress', progress = COALESCE($3::int, progress), stage = COALESCE($4::text, stage),
        deadline_at = $5, updated_at = now()
      WHERE id = $1 AND mac = $2 AND ${UNFINISHED}
      RETURNING id`,
  },
  finish: {
    name: 'jobs_finish',
    text: `WITH t AS (
        UPDATE jobs SET state = $3, error = $4::jsonb, progress = COALESCE($5::int, progress), finished_at = now(), updated_at = now(), deadline_at = NULL
        WHERE id = $1 AND mac = $2 AND ${UNFINISHED}
        RETURNING ${COLUMNS}
      ), a AS (
        INSERT INTO audit_log (actor, action, mac, job_id, batch_id, details)
        SELECT $6, 'job.' || state, mac, id, batch_id, $7::jsonb FROM t
      )
      SELECT t.*, (SELECT n.id FROM jobs n WHERE n.mac = t.mac AND n.id <> t.id AND ${UNFINISHED.replace(/state/g, 'n.state')} ORDER BY n.seq LIMIT 1) AS next_head_id FROM t`,
  },
  finishOfKind: {
    name: 'jobs_finish_of_kind',
    text: `WITH t AS (
        UPDATE jobs SET state = $3, error = $4::jsonb, finished_at = now(), updated_at = now(), deadline_at = NULL
        WHERE mac = $1 AND kind = $2 AND ${UNFINISHED}
        RETURNING ${COLUMNS}
      ), a AS (
        INSERT INTO audit_log (actor, action, mac, job_id, batch_id, details)
        SELECT $5, 'job.' || state, mac, id, batch_id, $6::jsonb FROM t
      )
      SELECT * FROM t ORDER BY seq`,
  },
  finishOfDevice: {
    name: 'jobs_finish_of_device',
    text: `WITH t AS (
        UPDATE jobs SET state = $2, error = $3::jsonb, finished_at = now(), updated_at = now(), deadline_at = NULL
        WHERE mac = $1 AND ${UNFINISHED}
        RETURNING ${COLUMNS}
      ), a AS (
        INSERT INTO audit_log (actor, action, mac, job_id, batch_id, details)
        SELECT $4, 'job.' || state, mac, id, batch_id, $5::jsonb FROM t
      )
      SELECT * FROM t ORDER BY seq`,
  },
  unfinishedOf: { name: 'jobs_unfinished_of', text: `SELECT ${COLUMNS} FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY seq` },
  kindOf: { name: 'jobs_kind_of', text: `SELECT kind FROM jobs WHERE id = $1 AND mac = $2 AND ${UNFINISHED}` },
  unfinished: { name: 'jobs_unfinished', text: `SELECT id, mac, state FROM jobs WHERE ${UNFINISHED} ORDER BY mac, seq` },
  batchLines: { name: 'jobs_batch_lines', text: 'SELECT lines FROM autop_batches WHERE id = $1' },
} satisfies Record<string, Statement>;

/** The job rows and their audit log: every read and write the job machine makes. */
export class JobStore {
  constructor(private readonly database: Database) {}

  /** For creating jobs outside a caller's transaction. */
  get db(): Queryable {
    return this.database.db;
  }

  /** Records jobs and their `job.created` audit rows in the caller's transaction, in the given order. */
  async create(q: Queryable, actor: JobActor, items: NewJob[], details: Record<string, unknown> = {}): Promise<JobRow[]> {
    if (!items.length) return [];
    const input = items.map((i, ord) => ({
      ord,
      kind: i.kind,
      mac: i.mac,
      installer_id: i.installerId,
      batch_id: i.batchId ?? null,
      params: i.params ?? {},
      expires_at: i.expiresAt.toISOString(),
    }));
    const rows = await runIn<RawJob>(q, st.create, [JSON.stringify(input), actor.accountId, actor.label, JSON.stringify(details)]);
    return rows.map(jobFromRow);
  }

  /** The job and the id of the job heading its device's queue, in one round trip. */
  async loadWithHead(id: string): Promise<{ row: JobRow; headId: string | null } | null> {
    const rows = await this.database.run<RawJob>(st.loadWithHead, [id]);
    return rows[0] ? { row: jobFromRow(rows[0]), headId: (rows[0].head_id as string | null) ?? null } : null;
  }

  async headOf(mac: string): Promise<string | null> {
    const rows = await this.database.run<{ id: string }>(st.head, [mac]);
    return rows[0]?.id ?? null;
  }

  /** Marks a delivery (and audits it), only if nobody delivered or finished the job meanwhile. */
  async dispatch(row: JobRow, next: { state: JobState; attempts: number; at: Date; deadline: Date }): Promise<boolean> {
    const action = row.attempts === 0 ? 'job.dispatched' : 'job.redelivered';
    // Conditional on the state read too: an answer (accepted, in-progress) that arrived meanwhile wins.
    const rows = await this.database.run(st.dispatch, [row.id, next.state, row.attempts, next.attempts, next.at, next.deadline, action, row.state]);
    return rows.length > 0;
  }

  /** An `accepted` or `in-progress` answer: progress and stage are kept when the answer has none. */
  async progress(id: string, mac: string, p: { progress: number | null; stage: string | null; deadline: Date }): Promise<boolean> {
    const rows = await this.database.run(st.progress, [id, mac, p.progress, p.stage, p.deadline]);
    return rows.length > 0;
  }

  /** Finishes an unfinished job (and audits it as `job.{state}`); null when it had finished already. */
  /**
   * Finishes an unfinished job (and audits it as `job.{state}`); null when it had finished already. Also
   * answers the device's next job (the new head of its queue), read in the same statement.
   */
  async finish(id: string, mac: string, end: { state: JobState; error: JobError | null; progress?: number | null }, actor: string): Promise<(JobRow & { nextHeadId: string | null }) | null> {
    const details = end.error ? { error: end.error } : {};
    const rows = await this.database.run<RawJob>(st.finish, [id, mac, end.state, end.error ? JSON.stringify(end.error) : null, end.progress ?? null, actor, JSON.stringify(details)]);
    return rows[0] ? { ...jobFromRow(rows[0]), nextHeadId: (rows[0].next_head_id as string | null) ?? null } : null;
  }

  /** Finishes every unfinished job of one kind for a device, in the caller's transaction. */
  async finishOfKind(q: Queryable, mac: string, kind: JobKind, end: { state: JobState; error: JobError }, actor: string): Promise<JobRow[]> {
    const rows = await runIn<RawJob>(q, st.finishOfKind, [mac, kind, end.state, JSON.stringify(end.error), actor, JSON.stringify({ error: end.error })]);
    return rows.map(jobFromRow);
  }

  /** Finishes every unfinished job of a device (it was deleted). */
  async finishOfDevice(mac: string, end: { state: JobState; error: JobError }, actor: string): Promise<JobRow[]> {
    const rows = await this.database.run<RawJob>(st.finishOfDevice, [mac, end.state, JSON.stringify(end.error), actor, JSON.stringify({ error: end.error })]);
    return rows.map(jobFromRow);
  }

  async unfinishedOf(mac: string): Promise<JobRow[]> {
    return (await this.database.run<RawJob>(st.unfinishedOf, [mac])).map(jobFromRow);
  }

  /** The kind of an unfinished job of this device, or null. */
  async kindOf(id: string, mac: string): Promise<JobKind | null> {
    const rows = await this.database.run<{ kind: JobKind }>(st.kindOf, [id, mac]);
    return rows[0]?.kind ?? null;
  }

  /** Every unfinished job's id, device and state, each device's jobs in their order (its head first). */
  async unfinished(): Promise<{ id: string; mac: string; state: JobState }[]> {
    return this.database.run<{ id: string; mac: string; state: JobState }>(st.unfinished, []);
  }

  /** The Autop lines of a batch (its one-time jobs take them from here rather than each holding a copy). */
  async batchLines(batchId: string): Promise<AutopLine[] | null> {
    const rows = await this.database.run<{ lines: AutopLine[] }>(st.batchLines, [batchId]);
    return rows[0]?.lines ?? null;
  }
}
