import type { Database, Queryable, Statement } from '../db/client.js';
import { runIn } from '../db/client.js';
import { GroupCommit } from '../db/group-commit.js';
import { UNFINISHED_STATE, type AutopLine, type JobError, type JobKind, type JobState, jobs } from './tables.js';
import type { IdempotencyKey as KeyClaim } from './idempotency.js';
import { batchedTransitionStatement, createClaimingStatement, createStatement, JOB_COLUMNS, selectorOf, transitionStatement, type BatchedTransition, type JobChange, type JobSelector } from './transitions.js';

export type { JobChange, JobSelector } from './transitions.js';

/**
 * Urgent jobs (a door opening) are read and changed in batches of their own: the same statements, but
 * never queued behind the in-flight batches of the background's thousands of jobs.
 */
export type Lane = 'normal' | 'urgent';

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
  /** Set by the engine from the kind's registration, never by a request. */
  urgent?: boolean;
}

/** Who changes a job: an account, the scheduler, the engine or the device; written into the audit log. */
export interface JobActor {
  accountId: string | null;
  label: string;
}

const UNFINISHED = UNFINISHED_STATE;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
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
    urgent: r.urgent === true,
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
        (SELECT h.id FROM jobs h WHERE h.mac = j.mac AND h.urgent = j.urgent AND h.${UNFINISHED} ORDER BY h.seq LIMIT 1) AS head_id
      FROM jobs j WHERE j.id = ANY($1::uuid[])`,
  },
  // A device has two lanes, each run in creation order: its urgent jobs and the others (engine.ts).
  heads: { name: 'jobs_heads', text: `SELECT DISTINCT ON (urgent) id FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY urgent DESC, seq` },
  unfinishedOf: { name: 'jobs_unfinished_of', text: `SELECT ${COLUMNS} FROM jobs WHERE mac = $1 AND ${UNFINISHED} ORDER BY seq` },
  kindOf: { name: 'jobs_kind_of', text: `SELECT kind FROM jobs WHERE id = $1 AND mac = $2 AND ${UNFINISHED}` },
  unfinished: { name: 'jobs_unfinished', text: `SELECT id, mac, state, urgent FROM jobs WHERE ${UNFINISHED} ORDER BY mac, seq` },
  batchLines: { name: 'jobs_batch_lines', text: 'SELECT id, lines FROM autop_batches WHERE id = ANY($1::uuid[])' },
} satisfies Record<string, Statement>;

/**
 * The job rows, their audit log and their lifecycle outbox: every read and write the job machine makes.
 * Every write is a transition through `transition` (or `create`), stamped by the one clock given here.
 */
export class JobStore {
  private last = 0;
  private readonly finishListeners = new Set<(ids: string[]) => void>();
  /** The engine's one-job transitions and reads, grouped: a storm's thousands become tens of statements. */
  private readonly batched: Record<Lane, Record<JobChange['type'], GroupCommit<BatchedTransition, TransitionedJob[]>>>;
  private readonly loads: Record<Lane, GroupCommit<string, { row: JobRow; headId: string | null } | null>>;
  private readonly lines: GroupCommit<string, AutopLine[] | null>;

  constructor(
    private readonly database: Database,
    /** The machine's clock (milliseconds); the engine is given the same one. */
    private readonly now: () => number = Date.now,
  ) {
    const grouped = (type: JobChange['type']) =>
      new GroupCommit<BatchedTransition, TransitionedJob[]>((items) => this.transitionMany(type, items), { key: (i) => i.selector.id.toLowerCase() });
    const lane = () => ({ dispatch: grouped('dispatch'), progress: grouped('progress'), finish: grouped('finish') });
    this.batched = { normal: lane(), urgent: lane() };
    this.loads = { normal: new GroupCommit((ids) => this.loadMany(ids)), urgent: new GroupCommit((ids) => this.loadMany(ids)) };
    // A batch's jobs are delivered together and each reads the batch's lines.
    this.lines = new GroupCommit(
      async (ids) => {
        const rows = await this.database.run<{ id: string; lines: AutopLine[] }>(st.batchLines, [[...new Set(ids)]]);
        const byId = new Map(rows.map((r) => [r.id, r.lines]));
        return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
      },
    );
  }

  /** For creating jobs outside a caller's transaction. */
  get db(): Queryable {
    return this.database.db;
  }

  /** The instant of a transition: the clock, made strictly increasing (by microseconds) within this process. */
  private stamp(): number {
    this.last = Math.max(this.now(), this.last + 0.001);
    return this.last;
  }

  /**
   * Records jobs with their `job.created` audit and outbox rows in the caller's transaction, in the given
   * order; with `claim`, the same statement claims that Idempotency-Key for them (a key held fails it).
   */
  async create(q: Queryable, actor: JobActor, items: NewJob[], details: Record<string, unknown> = {}, claim?: KeyClaim): Promise<JobRow[]> {
    if (!items.length) return [];
    const input = items.map((i, ord) => ({
      ord,
      kind: i.kind,
      mac: i.mac,
      installer_id: i.installerId,
      batch_id: i.batchId ?? null,
      params: i.params ?? {},
      expires_at: i.expiresAt.toISOString(),
      urgent: i.urgent === true,
    }));
    const values = [JSON.stringify(input), actor.accountId, actor.label, this.stamp(), JSON.stringify(details)];
    const rows = claim
      ? await runIn<RawJob>(q, createClaimingStatement, [...values, claim.accountId, claim.key, claim.fingerprint])
      : await runIn<RawJob>(q, createStatement, values);
    return rows.map(jobFromRow);
  }

  /**
   * The one path of every change to existing jobs: the unfinished jobs `selector` names are changed, each
   * with its audit row and its outbox row, in one statement (in `q`'s transaction when given). Answers the
   * jobs changed; none when they had finished already or (conditional selectors) changed meanwhile.
   */
  async transition(q: Queryable | null, selector: JobSelector, change: JobChange, actor: string, details: Record<string, unknown> = {}, lane: Lane = 'normal'): Promise<TransitionedJob[]> {
    const done = await this.transitionNow(q, selector, change, actor, details, lane);
    if (change.type === 'finish' && done.length && this.finishListeners.size) for (const listener of this.finishListeners) listener(done.map((j) => j.id));
    return done;
  }

  /**
   * Hears of jobs this process finished (a hint to read them again: in a caller's transaction they may not
   * have committed yet, and other processes' finishes are not heard); answers the unsubscribe.
   */
  onFinished(listener: (ids: string[]) => void): () => void {
    this.finishListeners.add(listener);
    return () => this.finishListeners.delete(listener);
  }

  private async transitionNow(q: Queryable | null, selector: JobSelector, change: JobChange, actor: string, details: Record<string, unknown>, lane: Lane): Promise<TransitionedJob[]> {
    if (!q && 'id' in selector) {
      // An id that is no job's (a device may answer anything) must not fail the batch it would join.
      if (!UUID.test(selector.id)) return [];
      return this.batched[lane][change.type].submit({ selector, change, actor, at: this.stamp(), details });
    }
    const statement = transitionStatement(selectorOf(selector), change.type);
    const values = [JSON.stringify(selector), JSON.stringify(change), actor, this.stamp(), JSON.stringify(details)];
    const rows = q ? await runIn<RawJob>(q, statement, values) : await this.database.run<RawJob>(statement, values);
    return rows.map((r) => ({ ...jobFromRow(r), fromState: (r.from_state as JobState | null) ?? null, nextHeadId: (r.next_head_id as string | null) ?? null }));
  }

  /** The job and the id of the job heading its lane of its device's queue, in one round trip. */
  async loadWithHead(id: string, lane: Lane = 'normal'): Promise<{ row: JobRow; headId: string | null } | null> {
    return UUID.test(id) ? this.loads[lane].submit(id) : null;
  }

  private async loadMany(ids: string[]): Promise<({ row: JobRow; headId: string | null } | null)[]> {
    const rows = await this.database.run<RawJob>(st.loadWithHead, [ids]);
    const byId = new Map(rows.map((r) => [r.id as string, { row: jobFromRow(r), headId: (r.head_id as string | null) ?? null }]));
    return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
  }

  /** One statement for many one-job transitions of one type; each caller gets its job's rows. */
  private async transitionMany(type: JobChange['type'], items: BatchedTransition[]): Promise<TransitionedJob[][]> {
    const input = items.map(({ selector: s, change, actor, at, details }) => ({ id: s.id, mac: s.mac ?? null, state: s.state ?? null, attempts: s.attempts ?? null, change, actor, at, details }));
    const rows = await this.database.run<RawJob>(batchedTransitionStatement(type), [JSON.stringify(input)]);
    const byId = new Map<string, TransitionedJob[]>();
    for (const r of rows) byId.set(r.id as string, [{ ...jobFromRow(r), fromState: (r.from_state as JobState | null) ?? null, nextHeadId: (r.next_head_id as string | null) ?? null }]);
    return items.map((i) => byId.get(i.selector.id.toLowerCase()) ?? []);
  }

  /** The heads of a device's two lanes (urgent jobs and the others): none, one or two ids, urgent first. */
  async headsOf(mac: string): Promise<string[]> {
    const rows = await this.database.run<{ id: string }>(st.heads, [mac]);
    return rows.map((r) => r.id);
  }

  async unfinishedOf(mac: string): Promise<JobRow[]> {
    return (await this.database.run<RawJob>(st.unfinishedOf, [mac])).map(jobFromRow);
  }

  /** The kind of an unfinished job of this device, or null. */
  async kindOf(id: string, mac: string): Promise<JobKind | null> {
    const rows = await this.database.run<{ kind: JobKind }>(st.kindOf, [id, mac]);
    return rows[0]?.kind ?? null;
  }

  /** Every unfinished job's id, device, state and lane, each device's jobs in their order (its heads first). */
  async unfinished(): Promise<{ id: string; mac: string; state: JobState; urgent: boolean }[]> {
    return this.database.run<{ id: string; mac: string; state: JobState; urgent: boolean }>(st.unfinished, []);
  }

  /** The Autop lines of a batch (its one-time jobs take them from here rather than each holding a copy). */
  async batchLines(batchId: string): Promise<AutopLine[] | null> {
    return this.lines.submit(batchId);
  }
}
