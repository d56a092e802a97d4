import { pgTable, smallint, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * The deployment this database belongs to: one row, made on first start. Its id namespaces everything the
 * deployment keeps in Redis, so two deployments sharing one Redis never take each other's jobs.
 */
export const deployment = pgTable('deployment', {
  /** Always 1: there is one row. */
  singleton: smallint('singleton').primaryKey().default(1),
  id: uuid('id').notNull().defaultRandom(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
