import { bigint, boolean, integer, jsonb, pgSequence, pgTable, text, timestamp, uuid, varchar, index } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';
import { macLibrary } from '../mac-library/tables.js';

export interface Relay {
  name: string;
  dtmf: string;
  enabled: boolean;
  accessMethods: AccessMethod[];
}
export const accessMethods = ['homepage', 'talking-page', 'pin', 'face', 'rf-card', 'bluetooth', 'nfc'] as const;
export type AccessMethod = (typeof accessMethods)[number];

// SIP numbers are 10 digits as in the vendor portal (e.g. 5926100061); a sequence keeps them unique.
export const sipNumberSequence = pgSequence('sip_number_seq', { startWith: 5926100001, minValue: 5926100001, maxValue: 9999999999 });

export const devices = pgTable(
  'devices',
  {
    mac: varchar('mac', { length: 12 })
      .primaryKey()
      .references(() => macLibrary.mac, { onDelete: 'restrict' }),
    installerId: uuid('installer_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'restrict' }),
    name: text('name').notNull(),
    type: text('type').notNull(),
    networkGroup: integer('network_group').notNull().default(1),
    location: text('location'),
    relays: jsonb('relays').$type<Relay[]>().notNull().default([]),
    allowMonitoring: boolean('allow_monitoring').notNull().default(false),
    /** SIP transmission type, set through remote maintenance. */
    connectType: text('connect_type', { enum: ['udp', 'tcp', 'tls'] }).notNull().default('udp'),
    sipNumber: varchar('sip_number', { length: 10 }).notNull().unique(),
    sipPassword: text('sip_password').notNull(),
    status: text('status', { enum: ['online', 'offline'] }).notNull().default('offline'),
    lastConnectedAt: timestamp('last_connected_at', { withTimezone: true }),
    /** The epoch of the session the status belongs to: an older session ending late never marks a newer one offline. */
    sessionEpoch: bigint('session_epoch', { mode: 'number' }),
    /** The gateway process holding that session: a gateway that died leaves its devices to be marked offline. */
    sessionGateway: text('session_gateway'),
    ip: text('ip'),
    model: text('model'),
    firmware: text('firmware'),
    configHash: text('config_hash'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('devices_installer_idx').on(t.installerId, t.createdAt), index('devices_status_idx').on(t.status)],
);
