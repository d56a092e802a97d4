import type { Statement } from '../db/client.js';
import { UNFINISHED_STATE, type JobError, type JobKind, type JobState } from './tables.js';

// The SQL of the job machine's one transition path. Every statement writes the job rows, one audit row
// and one outbox row (job_events) per job changed, as data-modifying CTEs of one statement, stamped with
// the one instant the caller's clock gave ($4, milliseconds): a transition, its audit entry and its event
// exist together or not at all, whatever is killed when.

export const JOB_COLUMNS = `id, seq, kind, urgent, mac, installer_id, batch_id, state, progress, stage, attempts, params, error, result, requested_by,
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

/** Where a statement's values come from: one set for the whole statement ($2, $3, $4, $5), or each row's own (batches). */
interface Inputs {
  /** The change, as jsonb. */
  change: string;
  /** The instant, as timestamptz. */
  at: string;
  /** The instant in the audit and outbox rows, read from CTE `t`. */
  rowAt: string;
  /** In the audit and outbox rows (CTE `t`): the actor and the audit details to add. */
  actor: string;
  details: string;
}
const ONE: Inputs = { change: '$2::jsonb', at: 'to_timestamp($4::float8 / 1000)', rowAt: 'to_timestamp($4::float8 / 1000)', actor: '$3', details: '$5::jsonb' };
// A batch: each row of `x` (jsonb_to_recordset of $1) carries its own change, instant, actor and details.
// Each row's own instant came back from the update as t.updated_at.
const EACH: Inputs = { change: 'x.change', at: 'to_timestamp(x.at::float8 / 1000)', rowAt: 't.updated_at', actor: 't.x_actor', details: 't.x_details' };
const AT = ONE.at;
const sel = (key: string) => `($1::jsonb->>'${key}')`;

const SELECTORS = {
  job: `id = ${sel('id')}::uuid AND (${sel('mac')} IS NULL OR mac = ${sel('mac')}) AND (${sel('state')} IS NULL OR state = ${sel('state')})
    AND (${sel('attempts')} IS NULL OR attempts = ${sel('attempts')}::int)`,
  device: `mac = ${sel('mac')} AND (${sel('kind')} IS NULL OR kind = ${sel('kind')})`,
  batch: `batch_id = ${sel('batchId')}::uuid AND state IN (SELECT jsonb_array_elements_text($1::jsonb->'states'))`,
};

type ChangeSql = { set: string; action: string; event: string; details: string };
function changes(i: Inputs): Record<JobChange['type'], ChangeSql> {
  const chg = (key: string) => `(${i.change}->>'${key}')`;
  return {
    dispatch: {
      set: `state = ${chg('state')}, attempts = ${chg('attempts')}::int, delivered_at = ${i.at}, deadline_at = ${chg('deadline')}::timestamptz, updated_at = ${i.at}`,
      action: `CASE WHEN t.attempts = 1 THEN 'job.dispatched' ELSE 'job.redelivered' END`,
      event: `CASE WHEN t.attempts = 1 THEN 'dispatched' ELSE 'redelivered' END`,
      details: `jsonb_build_object('attempt', t.attempts)`,
    },
    progress: {
      set: `state = 'in-progress', progress = COALESCE(${chg('progress')}::int, j.progress), stage = COALESCE(${chg('stage')}, j.stage),
        deadline_at = ${chg('deadline')}::timestamptz, updated_at = ${i.at}`,
      action: `'job.progress'`,
      event: `'progress'`,
      details: `jsonb_strip_nulls(jsonb_build_object('from', t.from_state, 'progress', t.progress, 'stage', t.stage))`,
    },
    finish: {
      set: `state = ${chg('state')}, error = NULLIF(${i.change}->'error', 'null'::jsonb), result = NULLIF(${i.change}->'result', 'null'::jsonb),
        progress = COALESCE(${chg('progress')}::int, j.progress),
        finished_at = ${i.at}, updated_at = ${i.at}, deadline_at = NULL`,
      action: `'job.' || t.state`,
      event: `'finished'`,
      details: `jsonb_strip_nulls(jsonb_build_object('error', t.error, 'result', t.result))`,
    },
  };
}
const CHANGES = changes(ONE);
const BATCH_CHANGES = changes(EACH);

/** The audit and outbox rows of the jobs in CTE `t` (which has `from_state`), and the statement's answer. */
function written(c: ChangeSql, answer: string, i: Inputs = ONE): string {
  const at = i.rowAt;
  return `, a AS (
      INSERT INTO audit_log (at, actor, action, mac, job_id, batch_id, details)
      SELECT ${at}, ${i.actor}, ${c.action}, t.mac, t.id, t.batch_id, ${c.details} || ${i.details} FROM t
    ), e AS (
      INSERT INTO job_events (job_id, mac, kind, batch_id, type, from_state, to_state, stage, progress, attempts, error, result, actor, at, delivered_at)
      SELECT t.id, t.mac, t.kind, t.batch_id, ${c.event}, t.from_state, t.state, t.stage, t.progress, t.attempts, t.error, t.result, ${i.actor}, ${at}, t.delivered_at
      FROM t ORDER BY t.seq
    )
    ${answer}`;
}

const statements = new Map<string, Statement>();

/**
 * The statement of one selector and one change: $1 the selector, $2 the change (both jsonb), $3 the actor,
 * $4 the instant, $5 audit details to add. Answers the changed jobs with their former state and, for each,
 * the job heading its device's queue (its lane: urgent or not) once the change is made.
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
      c,
      `SELECT t.*, (SELECT n.id FROM jobs n WHERE n.mac = t.mac AND n.urgent = t.urgent AND n.id NOT IN (SELECT id FROM t) AND ${unfinished('n')} ORDER BY n.seq LIMIT 1) AS next_head_id
      FROM t ORDER BY t.seq`,
    )}`;
  const statement = { name, text };
  statements.set(name, statement);
  return statement;
}

export const selectorOf = (s: JobSelector): keyof typeof SELECTORS => ('id' in s ? 'job' : 'batchId' in s ? 'batch' : 'device');

/** The statement making jobs; with `claim`, it also claims an Idempotency-Key for them (`createClaimingStatement`). */
function createText(claim: string): string {
  return `WITH input AS (
      SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS x(ord int, kind text, urgent boolean, mac text, installer_id uuid, batch_id uuid, params jsonb, expires_at timestamptz)
    ), t AS (
      INSERT INTO jobs (kind, urgent, mac, installer_id, batch_id, params, requested_by, expires_at, created_at, updated_at)
      SELECT kind, COALESCE(urgent, false), mac, installer_id, batch_id, params, $2::uuid, expires_at, ${AT}, ${AT} FROM input ORDER BY ord
      RETURNING ${JOB_COLUMNS}, NULL::text AS from_state
    )${claim}${written({ set: '', action: `'job.created'`, event: `'created'`, details: `jsonb_build_object('kind', t.kind)` }, 'SELECT * FROM t ORDER BY seq')}`;
}

/** Jobs made: $1 the jobs (jsonb), $2 requested by, $3 the actor, $4 the instant, $5 audit details to add. */
export const createStatement: Statement = { name: 'jobs_transition_create', text: createText('') };

/**
 * `createStatement` that also claims an Idempotency-Key with the ids of the jobs it makes ($6 the account,
 * $7 the key, $8 the fingerprint; the answer follows once built). A plain insert: a key already held fails
 * the whole statement with a unique violation, so a retry records nothing.
 */
export const createClaimingStatement: Statement = {
  name: 'jobs_transition_create_claiming',
  text: createText(`, claim AS (
      INSERT INTO idempotent_requests (account_id, key, fingerprint, body, job_ids, created_at)
      SELECT $6::uuid, $7::text, $8::text, NULL, COALESCE(jsonb_agg(t.id ORDER BY t.seq), '[]'::jsonb), ${AT} FROM t
    )`),
};

/** One job's transition in a batch: the job (conditional as `JobSelector`'s one job) and its own change. */
export interface BatchedTransition {
  selector: { id: string; mac?: string; state?: JobState; attempts?: number };
  change: JobChange;
  actor: string;
  at: number;
  details: Record<string, unknown>;
}

/**
 * The statement of many one-job transitions of one change type, each row of $1 (jsonb) its own job,
 * change, actor, instant and details; at most one row per job. Answers as `transitionStatement` does; a
 * job's next head leaves out only the jobs this statement finished.
 */
export function batchedTransitionStatement(change: JobChange['type']): Statement {
  const name = `jobs_transition_many_${change}`;
  const known = statements.get(name);
  if (known) return known;
  const c = BATCH_CHANGES[change];
  const text = `WITH x AS (
      SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, mac text, state text, attempts int, change jsonb, actor text, at float8, details jsonb)
    ), old AS (
      SELECT j.id, j.state FROM jobs j JOIN x ON j.id = x.id
      WHERE (x.mac IS NULL OR j.mac = x.mac) AND (x.state IS NULL OR j.state = x.state) AND (x.attempts IS NULL OR j.attempts = x.attempts)
        AND j.${UNFINISHED_STATE}
      ORDER BY j.seq FOR UPDATE OF j
    ), t AS (
      UPDATE jobs j SET ${c.set} FROM old JOIN x ON x.id = old.id WHERE j.id = old.id
      RETURNING ${JOB_COLUMNS.replace(/(\w+)/g, 'j.$1')}, old.state AS from_state, x.actor AS x_actor, x.details AS x_details
    )${written(
      c,
      `SELECT t.*, (SELECT n.id FROM jobs n WHERE n.mac = t.mac AND n.urgent = t.urgent AND n.${UNFINISHED_STATE}
          AND n.id NOT IN (SELECT f.id FROM t f WHERE NOT f.${UNFINISHED_STATE}) ORDER BY n.seq LIMIT 1) AS next_head_id
      FROM t ORDER BY t.seq`,
      EACH,
    )}`;
  const statement = { name, text };
  statements.set(name, statement);
  return statement;
}
