import { pgTable, timestamp, uuid, varchar, index } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';

// The MAC library decides which hardware may connect at all; a MAC belongs to exactly one installer.
export const macLibrary = pgTable(
  'mac_library',
  {
    mac: varchar('mac', { length: 12 }).primaryKey(),
    installerId: uuid('installer_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'restrict' }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
  },
  (t) => [index('mac_library_installer_idx').on(t.installerId, t.createdAt)],
);
