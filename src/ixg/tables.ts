import { integer, jsonb, pgTable, primaryKey, text, timestamp, uuid, varchar } from 'drizzle-orm/pg-core';
import { apartments, buildings, sites } from '../directory/tables.js';
import type { IxgSiteDocument } from './schemas.js';

/** An IXG-managed site: the last upload its IXGW-(T)GW gateway made, kept whole for the next diff. */
export const ixgSites = pgTable('ixg_sites', {
  siteId: uuid('site_id')
    .primaryKey()
    .references(() => sites.id, { onDelete: 'cascade' }),
  gatewayMac: varchar('gateway_mac', { length: 12 }).notNull(),
  version: integer('version').notNull(),
  sha256: varchar('sha256', { length: 64 }).notNull(),
  document: jsonb('document').$type<IxgSiteDocument>().notNull(),
  uploadedAt: timestamp('uploaded_at', { withTimezone: true }).notNull(),
});

/** An IXG station (door, master, sub station) as uploaded: reached through the gateway, not a device of ours. */
export const ixgStations = pgTable(
  'ixg_stations',
  {
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    number: varchar('number', { length: 8 }).notNull(),
    name: text('name').notNull(),
    type: text('type').notNull(),
    ip: text('ip'),
    buildingId: uuid('building_id').references(() => buildings.id, { onDelete: 'cascade' }),
    apartmentId: uuid('apartment_id').references(() => apartments.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.siteId, t.number] })],
);

/** A unit's app listing as uploaded (IXG app number and name) with its address book and door release. */
export const ixgApps = pgTable(
  'ixg_apps',
  {
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    number: varchar('number', { length: 8 }).notNull(),
    apartmentId: uuid('apartment_id')
      .notNull()
      .references(() => apartments.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    addressBook: jsonb('address_book').$type<{ station: string; doorRelease: boolean }[]>().notNull(),
  },
  (t) => [primaryKey({ columns: [t.siteId, t.number] })],
);
