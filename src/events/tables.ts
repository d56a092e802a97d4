import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, customType, index, integer, jsonb, pgTable, text, timestamp, uuid, varchar } from 'drizzle-orm/pg-core';

// Events that leave the cloud (webhooks, the live stream), and the presence outbox they are made from.

const xid8 = customType<{ data: string; driverData: string }>({ dataType: () => 'xid8' });

/**
 * One event for integrators (docs/events.md): written in the transaction of what it reports, read in
 * (tx, id) order below the oldest running transaction (as job_events), so a reader never skips one.
 */
export const outboundEvents = pgTable(
  'outbound_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tx: xid8('tx').notNull().default(sql`pg_current_xact_id()`),
    /** The event's id (`webhook-id`): stable across retries and replays, the receiver's idempotency key. */
    eventId: uuid('event_id').notNull().defaultRandom(),
    type: text('type').notNull(),
    /** Whose event it is: the installer's endpoints and stream get it (distributors get every one). */
    installerId: uuid('installer_id'),
    siteId: uuid('site_id'),
    mac: varchar('mac', { length: 12 }),
    /** Only this endpoint gets it (a test event). */
    endpointId: uuid('endpoint_id'),
    data: jsonb('data').notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('outbound_events_order_idx').on(t.tx, t.id), index('outbound_events_at_idx').on(t.at)],
);

/** Presence changes as the gateways wrote them (the presence outbox): online or offline, per device. */
export const presenceEvents = pgTable(
  'presence_events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    tx: xid8('tx').notNull().default(sql`pg_current_xact_id()`),
    mac: varchar('mac', { length: 12 }).notNull(),
    status: text('status', { enum: ['online', 'offline'] }).notNull(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('presence_events_order_idx').on(t.tx, t.id)],
);

/** What integrators were last told of a device's presence, and what is pending (the grace, flapping). */
export const presenceState = pgTable(
  'presence_state',
  {
    mac: varchar('mac', { length: 12 }).primaryKey(),
    /** The last device.online / device.offline sent (null: none yet). */
    announced: text('announced', { enum: ['online', 'offline'] }),
    /** Offline since then, not yet announced: device.offline goes out at offlineAt + grace unless it is back. */
    offlineAt: timestamp('offline_at', { withTimezone: true }),
    /** Offline transitions within the flapping window. */
    recent: jsonb('recent').$type<string[]>().notNull().default([]),
    /** Flapping: one device.flapping went out; presence events wait for it to calm down. */
    flappingSince: timestamp('flapping_since', { withTimezone: true }),
    flaps: integer('flaps').notNull().default(0),
    lastChangeAt: timestamp('last_change_at', { withTimezone: true }),
    online: boolean('online').notNull().default(false),
  },
  (t) => [index('presence_state_offline_idx').on(t.offlineAt)],
);

/** Where each outbox reader is (outbound events for webhooks; presence events for the presence follower). */
export const outboxCursors = pgTable('outbox_cursors', {
  name: text('name').primaryKey(),
  lastTx: xid8('last_tx').notNull().default(sql`'0'::xid8`),
  lastId: bigint('last_id', { mode: 'number' }).notNull().default(0),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});
