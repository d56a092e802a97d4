import { sql } from 'drizzle-orm';
import { bigint, bigserial, customType, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid, varchar } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';
import { devices } from '../devices/tables.js';

/** A job kind's name: whatever kind registered itself (`JobKinds`); the machine fixes no list. */
export type JobKind = string;
/** What a kind's name looks like (checked at the API before the registry is asked). */
export const JOB_KIND_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
export const jobStates = ['queued', 'dispatched', 'in-progress', 'succeeded', 'failed', 'expired', 'canceled'] as const;
export type JobState = (typeof jobStates)[number];
export const finishedStates: readonly JobState[] = ['succeeded', 'failed', 'expired', 'canceled'];
export interface JobError {
  code: string;
  message: string;
}

export interface AutopLine {
  key: string;
  value: string;
}

// A job is one command to one device. Its row is the truth; the BullMQ job of the same id only drives it.
// The MAC is not a foreign key so a job's history outlives a deleted device.
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** Creation order: a device's jobs run in this order. */
    seq: bigserial('seq', { mode: 'number' }).notNull(),
    kind: text('kind').notNull(),
    mac: varchar('mac', { length: 12 }).notNull(),
    /** The installer owning the device when the job was made: who may see and cancel it. */
    installerId: uuid('installer_id').notNull(),
    batchId: uuid('batch_id'),
    state: text('state', { enum: jobStates }).notNull().default('queued'),
    progress: integer('progress').notNull().default(0),
    /** The kind-specific stage the device last reported (an upgrade's downloading, installing, rebooting). */
    stage: text('stage'),
    attempts: integer('attempts').notNull().default(0),
    params: jsonb('params').$type<Record<string, unknown>>().notNull().default({}),
    error: jsonb('error').$type<JobError | null>(),
    /** What the device answered, as its kind's result schema reads it (null when the kind keeps none). */
    result: jsonb('result').$type<unknown>(),
    requestedBy: uuid('requested_by').references(() => accounts.id, { onDelete: 'set null' }),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 6 }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    /** When the command was last published to the device. */
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    /** When the device must have answered the current delivery; redelivery after it. */
    deadlineAt: timestamp('deadline_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    index('jobs_mac_seq_idx').on(t.mac, t.seq),
    index('jobs_state_idx').on(t.state),
    index('jobs_batch_idx').on(t.batchId),
    index('jobs_installer_idx').on(t.installerId, t.seq),
    // The engine reads only unfinished jobs (heads, reconciliation); finished history can grow without bound.
    index('jobs_unfinished_idx').on(t.mac, t.seq).where(sql.raw(UNFINISHED_STATE)),
  ],
);

/** A job still to run or running, as SQL text over a `state` column (statements, the partial index). */
export const UNFINISHED_STATE = `state NOT IN (${finishedStates.map((s) => `'${s}'`).join(', ')})`;
/** The same, for drizzle's `sql` templates, over a table alias's state (`j.state`). */
export const unfinishedState = (alias: string) => sql.raw(`${alias}.${UNFINISHED_STATE}`);

export const autopBatches = pgTable('autop_batches', {
  id: uuid('id').primaryKey().defaultRandom(),
  mode: text('mode', { enum: ['regular', 'once'] }).notNull(),
  lines: jsonb('lines').$type<AutopLine[]>().notNull(),
  deviceCount: integer('device_count').notNull(),
  installerId: uuid('installer_id').notNull(),
  requestedBy: uuid('requested_by').references(() => accounts.id, { onDelete: 'set null' }),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Regular Autop: always valid, part of the device's effective configuration. */
export const regularAutop = pgTable('regular_autop', {
  mac: varchar('mac', { length: 12 })
    .primaryKey()
    .references(() => devices.mac, { onDelete: 'cascade' }),
  lines: jsonb('lines').$type<AutopLine[]>().notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Who asked for what, when, and what came of it. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    at: timestamp('at', { withTimezone: true, precision: 6 }).notNull().defaultNow(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    mac: varchar('mac', { length: 12 }),
    jobId: uuid('job_id'),
    batchId: uuid('batch_id'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index('audit_mac_idx').on(t.mac, t.at), index('audit_job_idx').on(t.jobId)],
);

/**
 * Job-creating requests made with an Idempotency-Key: a retry with the same key answers the first answer
 * instead of making new jobs. Written in the transaction that creates the jobs.
 */
export const idempotentRequests = pgTable(
  'idempotent_requests',
  {
    accountId: uuid('account_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    /** SHA-256 of method, route and body: the same key with another request is refused. */
    fingerprint: varchar('fingerprint', { length: 64 }).notNull(),
    /** The first answer, returned again to a retry; null until the creating transaction has made it. */
    body: jsonb('body').$type<unknown>(),
    jobIds: jsonb('job_ids').$type<string[]>().notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.key] }), index('idempotent_requests_created_idx').on(t.createdAt)],
);

/** A transaction id (64 bits, as text): orders the outbox by the transactions that wrote it. */
const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => 'xid8' });

export const jobEventTypes = ['created', 'dispatched', 'redelivered', 'progress', 'finished'] as const;
export type JobEventType = (typeof jobEventTypes)[number];

/**
 * The lifecycle outbox: one row per job transition, written in the statement that makes the transition.
 * The job event follower hands rows to its sinks in transaction order and removes them once every sink
 * took them. `tx` is what makes that order gap-free (see job-events.ts).
 */
export const jobEvents = pgTable(
  'job_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tx: xid8('tx').notNull().default(sql`pg_current_xact_id()`),
    jobId: uuid('job_id').notNull(),
    mac: varchar('mac', { length: 12 }).notNull(),
    kind: text('kind').notNull(),
    batchId: uuid('batch_id'),
    type: text('type', { enum: jobEventTypes }).notNull(),
    /** Null for `created`. */
    fromState: text('from_state', { enum: jobStates }),
    toState: text('to_state', { enum: jobStates }).notNull(),
    stage: text('stage'),
    progress: integer('progress').notNull(),
    attempts: integer('attempts').notNull(),
    error: jsonb('error').$type<JobError | null>(),
    /** What the device answered, in its kind's terms (null when the kind keeps none). */
    result: jsonb('result').$type<unknown>(),
    actor: text('actor').notNull(),
    at: timestamp('at', { withTimezone: true, precision: 6 }).notNull(),
    /** When the job was last delivered (a finish on the device's answer measures from it). */
    deliveredAt: timestamp('delivered_at', { withTimezone: true, precision: 6 }),
  },
  (t) => [index('job_events_order_idx').on(t.tx, t.id)],
);

/** How far each sink of the outbox has taken it: the position (tx, id) of the last event it took. */
export const jobEventCursors = pgTable('job_event_cursors', {
  sink: text('sink').primaryKey(),
  lastTx: xid8('last_tx').notNull().default(sql`'0'::xid8`),
  lastId: bigint('last_id', { mode: 'number' }).notNull().default(0),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
