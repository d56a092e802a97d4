import type { Statement } from '../db/client.js';
import { UNFINISHED_STATE, type JobError, type JobKind, type JobState } from './tables.js';

// The SQL of the job machine's one transition path. Every statement writes the job rows, one audit row
// and one outbox row (job_events) per job changed, as data-modifying CTEs of one statement, stamped with
// the one instant the caller's clock gave ($4, milliseconds): a transition, its audit entry and its event
// exist together or not at all, whatever is killed when.

export const JOB_COLUMNS = `id, seq, kind, mac, installer_id, batch_id, state, progress, stage, attempts, params, error, result, requested_by,
  created_at, updated_at, expires_at, delivered_at, deadline_at, finished_at`;

/** Which unfinished jobs a transition applies to (a finished job never changes again). */
export type JobSelector =
  /** One job; `state` and `attempts` make it conditional on what the caller read. */
  | { id: string; mac?: string; state?: JobState; attempts?: number }
  /** A device's unfinished jobs, or those of one kind (a reset ends one-time Autop; a deleted device ends all). */
  | { mac: string; kind?: JobKind }
  /** A batch's jobs in these states (a canceled batch or upgrade ends those not started). */
  | { batchId: string; states: JobState[] };

/** What a transition does. */
export type JobChange =
  /** A delivery: the first is `dispatched`, the others `redelivered`. */
  | { type: 'dispatch'; state: JobState; attempts: number; deadline: Date }
  /** An `accepted` or `in-progress` answer: progress and stage are kept when the answer has none. */
  | { type: 'progress'; progress: number | null; stage: string | null; deadline: Date }
  /** The end, in any finished state. */
  | { type: 'finish'; state: Extract<JobState, 'succeeded' | 'failed' | 'expired' | 'canceled'>; error: JobError | null; progress?: number | null; result?: unknown };

const AT = 'to_timestamp($4::float8 / 1000)';
const sel = (key: string) => `($1::jsonb->>'${key}')`;
const chg = (key: string) => `($2::jsonb->>'${key}')`;

const SELECTORS = {
  job: `id = ${sel('id')}::uuid AND (${sel('mac')} IS NULL OR mac = ${sel('mac')}) AND (${sel('state')} IS NULL OR state = ${sel('state')})
    AND (${sel('attempts')} IS NULL OR attempts = ${sel('attempts')}::int)`,
  device: `mac = ${sel('mac')} AND (${sel('kind')} IS NULL OR kind = ${sel('kind')})`,
  batch: `batch_id = ${sel('batchId')}::uuid AND state IN (SELECT jsonb_array_elements_text($1::jsonb->'states'))`,
};

const CHANGES: Record<JobChange['type'], { set: string; action: string; event: string; details: string }> = {
  dispatch: {
    set: `state = ${chg('state')}, attempts = ${chg('attempts')}::int, delivered_at = ${AT}, deadline_at = ${chg('deadline')}::timestamptz, updated_at = ${AT}`,
    action: `CASE WHEN t.attempts = 1 THEN 'job.dispatched' ELSE 'job.redelivered' END`,
    event: `CASE WHEN t.attempts = 1 THEN 'dispatched' ELSE 'redelivered' END`,
    details: `jsonb_build_object('attempt', t.attempts)`,
  },
  progress: {
    set: `state = 'in-progress', progress = COALESCE(${chg('progress')}::int, j.progress), stage = COALESCE(${chg('stage')}, j.stage),
      deadline_at = ${chg('deadline')}::timestamptz, updated_at = ${AT}`,
    action: `'job.progress'`,
    event: `'progress'`,
    details: `jsonb_strip_nulls(jsonb_build_object('from', t.from_state, 'progress', t.progress, 'stage', t.stage))`,
  },
  finish: {
    set: `state = ${chg('state')}, error = NULLIF($2::jsonb->'error', 'null'::jsonb), result = NULLIF($2::jsonb->'result', 'null'::jsonb),
      progress = COALESCE(${chg('progress')}::int, j.progress),
      finished_at = ${AT}, updated_at = ${AT}, deadline_at = NULL`,
    action: `'job.' || t.state`,
    event: `'finished'`,
    details: `jsonb_strip_nulls(jsonb_build_object('error', t.error, 'result', t.result))`,
  },
};

/** The audit and outbox rows of the jobs in CTE `t` (which has `from_state`), and the statement's answer. */
function written(action: string, event: string, details: string, answer: string): string {
  return `, a AS (
      INSERT INTO audit_log (at, actor, action, mac, job_id, batch_id, details)
      SELECT ${AT}, $3, ${action}, t.mac, t.id, t.batch_id, ${details} || $5::jsonb FROM t
    ), e AS (
      INSERT INTO job_events (job_id, mac, kind, batch_id, type, from_state, to_state, stage, progress, attempts, error, result, actor, at, delivered_at)
      SELECT t.id, t.mac, t.kind, t.batch_id, ${event}, t.from_state, t.state, t.stage, t.progress, t.attempts, t.error, t.result, $3, ${AT}, t.delivered_at
      FROM t ORDER BY t.seq
    )
    ${answer}`;
}

const statements = new Map<string, Statement>();

/**
 * The statement of one selector and one change: $1 the selector, $2 the change (both jsonb), $3 the actor,
 * $4 the instant, $5 audit details to add. Answers the changed jobs with their former state and, for each,
 * the job heading its device's queue once the change is made.
 */
export function transitionStatement(selector: keyof typeof SELECTORS, change: JobChange['type']): Statement {
  const name = `jobs_transition_${selector}_${change}`;
  const known = statements.get(name);
  if (known) return known;
  const c = CHANGES[change];
  const unfinished = (alias: string) => `${alias}.${UNFINISHED_STATE}`;
  const text = `WITH old AS (
      SELECT id, state FROM jobs WHERE ${SELECTORS[selector]} AND ${UNFINISHED_STATE} ORDER BY seq FOR UPDATE
    ), t AS (
      UPDATE jobs j SET ${c.set} FROM old WHERE j.id = old.id
      RETURNING ${JOB_COLUMNS.replace(/(\w+)/g, 'j.$1')}, old.state AS from_state
    )${written(
      c.action,
      c.event,
      c.details,
      `SELECT t.*, (SELECT n.id FROM jobs n WHERE n.mac = t.mac AND n.id NOT IN (SELECT id FROM t) AND ${unfinished('n')} ORDER BY n.seq LIMIT 1) AS next_head_id
      FROM t ORDER BY t.seq`,
    )}`;
  const statement = { name, text };
  statements.set(name, statement);
  return statement;
}

export const selectorOf = (s: JobSelector): keyof typeof SELECTORS => ('id' in s ? 'job' : 'batchId' in s ? 'batch' : 'device');

/** Jobs made: $1 the jobs (jsonb), $2 requested by, $3 the actor, $4 the instant, $5 audit details to add. */
export const createStatement: Statement = {
  name: 'jobs_transition_create',
  text: `WITH input AS (
      SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS x(ord int, kind text, mac text, installer_id uuid, batch_id uuid, params jsonb, expires_at timestamptz)
    ), t AS (
      INSERT INTO jobs (kind, mac, installer_id, batch_id, params, requested_by, expires_at, created_at, updated_at)
      SELECT kind, mac, installer_id, batch_id, params, $2::uuid, expires_at, ${AT}, ${AT} FROM input ORDER BY ord
      RETURNING ${JOB_COLUMNS}, NULL::text AS from_state
    )${written(`'job.created'`, `'created'`, `jsonb_build_object('kind', t.kind)`, 'SELECT * FROM t ORDER BY seq')}`,
};
