import { bigint, boolean, index, integer, jsonb, pgTable, text, timestamp, unique, uuid, varchar } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';

/** A firmware image in the catalogue; the file lives in DATA_DIR/firmware/{id}.bin. */
export const firmware = pgTable(
  'firmware',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    model: text('model').notNull(),
    version: text('version').notNull(),
    changelog: text('changelog').notNull().default(''),
    size: bigint('size', { mode: 'number' }).notNull(),
    sha256: varchar('sha256', { length: 64 }).notNull(),
    /** The uploaded file's name, shown only. */
    fileName: text('file_name').notNull(),
    uploadedBy: uuid('uploaded_by').references(() => accounts.id, { onDelete: 'set null' }),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 6 }).notNull().defaultNow(),
  },
  (t) => [unique('firmware_model_version_uq').on(t.model, t.version), index('firmware_model_idx').on(t.model, t.createdAt)],
);

export interface SkippedDevice {
  mac: string;
  reason: string;
}

/**
 * An upgrade: one firmware to a set of devices, now or at a time. Until it starts it is only this row;
 * at its time each device gets an `upgrade` job of the provisioning engine under batch id = upgrade id.
 * Model and version are kept here so the record outlives the firmware.
 */
export const upgrades = pgTable(
  'upgrades',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    firmwareId: uuid('firmware_id').references(() => firmware.id, { onDelete: 'set null' }),
    model: text('model').notNull(),
    version: text('version').notNull(),
    /** The installer owning the devices (null when a distributor's upgrade spans several installers). */
    installerId: uuid('installer_id'),
    requestedBy: uuid('requested_by').references(() => accounts.id, { onDelete: 'set null' }),
    macs: jsonb('macs').$type<string[]>().notNull(),
    /** Devices left out because they already ran the version when the upgrade was made or started. */
    skipped: jsonb('skipped').$type<SkippedDevice[]>().notNull().default([]),
    at: timestamp('at', { withTimezone: true }).notNull(),
    resetAfterUpgrade: boolean('reset_after_upgrade').notNull().default(false),
    /** How long after its start a device may still begin (offline devices start when they come back). */
    expirySeconds: integer('expiry_seconds').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    /** When its last device job finished (written by the upgrade status sink of the job event outbox). */
    executedAt: timestamp('executed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 6 }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('upgrades_installer_idx').on(t.installerId, t.createdAt), index('upgrades_firmware_idx').on(t.firmwareId)],
);
