import { customType, index, integer, pgTable, primaryKey, text, timestamp, varchar } from 'drizzle-orm/pg-core';

const bytea = customType<{ data: Buffer; driverData: Buffer }>({ dataType: () => 'bytea' });

/**
 * Documents devices fetch over HTTP, named by the SHA-256 of their bytes: what is too large for an MQTT
 * command (a large effective configuration, the directory's contact and credential lists). Stored once per content.
 */
export const documents = pgTable('documents', {
  sha256: varchar('sha256', { length: 64 }).primaryKey(),
  mediaType: text('media_type').notNull(),
  size: integer('size').notNull(),
  body: bytea('body').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** Which device may fetch which document: a device reads only documents made for it. */
export const deviceDocuments = pgTable(
  'device_documents',
  {
    mac: varchar('mac', { length: 12 }).notNull(),
    sha256: varchar('sha256', { length: 64 })
      .notNull()
      .references(() => documents.sha256, { onDelete: 'cascade' }),
    /** What the document is to the device (e.g. `config`); only the latest few of each name are kept. */
    name: text('name').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true, precision: 6 }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.mac, t.sha256] }), index('device_documents_mac_name_idx').on(t.mac, t.name, t.createdAt)],
);
