import type { Database, Queryable, Statement } from '../db/client.js';
import { runIn } from '../db/client.js';
import { UNFINISHED_STATE, type AutopLine, type JobError, type JobKind, type JobState, jobs } from './tables.js';
import { createStatement, JOB_COLUMNS, selectorOf, transitionStatement, type JobChange, type JobSelector } from './transitions.js';

export type { JobChange, JobSelector } from './transitions.js';

/** A job as a transition left it: its state before, and the job heading its device's queue after. */
export type TransitionedJob = JobRow & { fromState: JobState | null; nextHeadId: string | null };

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
const COLUMNS = JOB_COLUMNS;

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
    result: r.result ?? null,
    requestedBy: (r.requested_by as string | null) ?? null,
    createdAt: toDate(r.created_at),
    updatedAt: toDate(r.updated_at),
    expiresAt: toDate(r.expires_at),
    deliveredAt: toDateOrNull(r.delivered_at),
    deadlineAt: toDateOrNull(r.deadline_at),
    finishedAt: toDateOrNull(r.finished_at),
  };
}

// Reads only: every write is a transition (transitions.ts), made by `JobStore.transition` or `create`.
const st = {
  loadWithHead: {
    name: 'jobs_load_with_head',
    text: `SELECT ${COLUMNS.replace(/(\w+)/g, 'j.$1')},
        (SELECT h.id FROM jobs h WHERE h.mac = j.mac AND h.${UNFINISHED} ORDER BY h.seq LIMIT 1) AS head_id
      FROM jobs j WHERE j.id = $1`,
  },
  head: { name: 'jobs_head', text: `SELECT id FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY seq LIMIT 1` },
  unfinishedOf: { name: 'jobs_unfinished_of', text: `SELECT ${COLUMNS} FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY seq` },
  kindOf: { name: 'jobs_kind_of', text: `SELECT kind FROM jobs WHERE id = $1 AND mac = $2 AND ${UNFINISHED}` },
  unfinished: { name: 'jobs_unfinished', text: `SELECT id, mac, state FROM jobs WHERE ${UNFINISHED} ORDER BY mac, seq` },
  batchLines: { name: 'jobs_batch_lines', text: 'SELECT lines FROM autop_batches WHERE id = $1' },
} satisfies Record<string, Statement>;

/**
 * The job rows, their audit log and their lifecycle outbox: every read and write the job machine makes.
 * Every write is a transition through `transition` (or `create`), stamped by the one clock given here.
 */
export class JobStore {
  private last = 0;

  constructor(
    private readonly database: Database,
    /** The machine's clock (milliseconds); the engine is given the same one. */
    private readonly now: () => number = Date.now,
  ) {}

  /** For creating jobs outside a caller's transaction. */
  get db(): Queryable {
    return this.database.db;
  }

  /** The instant of a transition: the clock, made strictly increasing (by microseconds) within this process. */
  private stamp(): number {
    this.last = Math.max(this.now(), this.last + 0.001);
    return this.last;
  }

  /** Records jobs with their `job.created` audit and outbox rows in the caller's transaction, in the given order. */
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
    const rows = await runIn<RawJob>(q, createStatement, [JSON.stringify(input), actor.accountId, actor.label, this.stamp(), JSON.stringify(details)]);
    return rows.map(jobFromRow);
  }

  /**
   * The one path of every change to existing jobs: the unfinished jobs `selector` names are changed, each
   * with its audit row and its outbox row, in one statement (in `q`'s transaction when given). Answers the
   * jobs changed; none when they had finished already or (conditional selectors) changed meanwhile.
   */
  async transition(q: Queryable | null, selector: JobSelector, change: JobChange, actor: string, details: Record<string, unknown> = {}): Promise<TransitionedJob[]> {
    const statement = transitionStatement(selectorOf(selector), change.type);
    const values = [JSON.stringify(selector), JSON.stringify(change), actor, this.stamp(), JSON.stringify(details)];
    const rows = q ? await runIn<RawJob>(q, statement, values) : await this.database.run<RawJob>(statement, values);
    return rows.map((r) => ({ ...jobFromRow(r), fromState: (r.from_state as JobState | null) ?? null, nextHeadId: (r.next_head_id as string | null) ?? null }));
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
