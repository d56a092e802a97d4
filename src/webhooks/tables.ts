import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, index, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';
import { outboundEvents } from '../events/tables.js';

/** A receiver an installer (or a distributor, for its whole scope) subscribed to events. */
export const webhookEndpoints = pgTable(
  'webhook_endpoints',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    ownerId: uuid('owner_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    ownerRole: text('owner_role', { enum: ['installer', 'distributor'] }).notNull(),
    url: text('url').notNull(),
    description: text('description'),
    /** The event types it gets; empty: every type. */
    eventTypes: jsonb('event_types').$type<string[]>().notNull().default([]),
    enabled: boolean('enabled').notNull().default(true),
    /** Why it was disabled by the cloud (a 410 answer), null when enabled or disabled by its owner. */
    disabledReason: text('disabled_reason'),
    secret: text('secret').notNull(),
    /** During a rotation the old secret signs too, until `previousSecretUntil`. */
    previousSecret: text('previous_secret'),
    previousSecretUntil: timestamp('previous_secret_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('webhook_endpoints_owner_idx').on(t.ownerId)],
);

/** One event to one endpoint: pending until delivered (2xx), or failed after about three days. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    endpointId: uuid('endpoint_id')
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: 'cascade' }),
    eventRow: bigint('event_row', { mode: 'number' })
      .notNull()
      .references(() => outboundEvents.id, { onDelete: 'cascade' }),
    /** The order it keeps: one device's events go one after another. */
    orderKey: text('order_key').notNull(),
    state: text('state', { enum: ['pending', 'succeeded', 'failed'] }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    /** An attempt is under way until then (its claim): later deliveries of the same device wait for it. */
    claimedUntil: timestamp('claimed_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastAttemptAt: timestamp('last_attempt_at', { withTimezone: true }),
    lastStatus: integer('last_status'),
    lastLatencyMs: integer('last_latency_ms'),
    lastError: text('last_error'),
    lastResponse: text('last_response'),
  },
  (t) => [
    index('webhook_deliveries_due_idx').on(t.nextAttemptAt, t.id).where(sql`${t.state} = 'pending'`),
    index('webhook_deliveries_order_idx').on(t.endpointId, t.orderKey, t.id),
    index('webhook_deliveries_endpoint_idx').on(t.endpointId, t.id),
    index('webhook_deliveries_in_flight_idx').on(t.endpointId, t.orderKey).where(sql`${t.claimedUntil} IS NOT NULL`),
  ],
);

/** Every attempt of a delivery: the delivery log. */
export const webhookAttempts = pgTable(
  'webhook_attempts',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    deliveryId: bigint('delivery_id', { mode: 'number' })
      .notNull()
      .references(() => webhookDeliveries.id, { onDelete: 'cascade' }),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    status: integer('status'),
    latencyMs: integer('latency_ms').notNull(),
    error: text('error'),
    response: text('response'),
  },
  (t) => [index('webhook_attempts_delivery_idx').on(t.deliveryId, t.id)],
);
