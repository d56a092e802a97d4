import { bigserial, index, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/**
 * Every write an account makes outside the job machine (whose transitions have their own audit log):
 * the directory, devices, the MAC library, accounts. Written in the write's own transaction.
 */
export const writeAudit = pgTable(
  'write_audit',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    /** The account that made the write (a sub-installer or property manager, not the installer it works for). */
    accountId: uuid('account_id').notNull(),
    /** Whose data was written (null: a distributor's own, e.g. the firmware catalogue). */
    installerId: uuid('installer_id'),
    siteId: uuid('site_id'),
    action: text('action').notNull(),
    /** What was written: an id, or a MAC. */
    subject: text('subject'),
    details: jsonb('details'),
  },
  (t) => [index('write_audit_installer_idx').on(t.installerId, t.id), index('write_audit_site_idx').on(t.siteId, t.id), index('write_audit_subject_idx').on(t.subject)],
);
