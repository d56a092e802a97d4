import { bigserial, boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid, varchar } from 'drizzle-orm/pg-core';
import { sql } from 'drizzle-orm';
import { accounts } from '../accounts/tables.js';
import { devices } from '../devices/tables.js';

/** Who an apartment's call rings, as in the portal: all at once, or up to three steps in order. */
export type ContactPreference = { mode: 'group' } | { mode: 'sequence'; steps: CallStep[]; stepTimeoutSeconds?: number };
export const callSteps = ['app-accounts', 'indoor-monitors', 'landlines'] as const;
export type CallStep = (typeof callSteps)[number];

export interface PhoneNumber {
  countryCode: string;
  number: string;
}

/** A community or an office, owned by one installer; its time zone and modes reach every device placed in it. */
export const sites = pgTable(
  'sites',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    installerId: uuid('installer_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'restrict' }),
    kind: text('kind', { enum: ['community', 'office'] }).notNull(),
    name: text('name').notNull(),
    address: text('address'),
    timeZone: text('time_zone').notNull(),
    contactDisplay: text('contact_display', { enum: ['first-last', 'last-first'] }).notNull().default('first-last'),
    pinMode: text('pin_mode', { enum: ['pin', 'apt-pin'] }).notNull().default('pin'),
    communityCalls: boolean('community_calls').notNull().default(false),
    /** The door log records calls answered without the door opened (seed 004 "Door log"). */
    logUnopenedCalls: boolean('log_unopened_calls').notNull().default(false),
    /** 'ixg': buildings and units mirror an Aiphone IXG system's upload (read-only here); null: ours. */
    managedBy: text('managed_by', { enum: ['ixg'] }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('sites_installer_idx').on(t.installerId, t.createdAt)],
);

export const buildings = pgTable(
  'buildings',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** Floor labels (−10…128, G0–G2); null: as configured on the device. */
    groundFloor: text('ground_floor'),
    startFloor: text('start_floor'),
    /** The IXG building number (`01`) of a mirrored building; null for ours. */
    ixgNumber: text('ixg_number'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('buildings_site_name_idx').on(t.siteId, t.name)],
);

export const apartments = pgTable(
  'apartments',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    buildingId: uuid('building_id')
      .notNull()
      .references(() => buildings.id, { onDelete: 'cascade' }),
    /** What visitors dial on the door phone: 1–6 digits, `#` allowed but not first. */
    number: varchar('number', { length: 12 }).notNull(),
    name: text('name'),
    floor: text('floor'),
    contactPreference: jsonb('contact_preference').$type<ContactPreference>().notNull().default({ mode: 'group' }),
    networkGroup: integer('network_group').notNull().default(1),
    /** The door phone's web relay this apartment's residents open (0: none), as in the portal's template. */
    webRelayId: integer('web_relay_id').notNull().default(0),
    /** An IXG unit's type (residential, entrance, commercial); null for ours. */
    unitType: text('unit_type'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('apartments_building_number_idx').on(t.buildingId, t.number), index('apartments_site_idx').on(t.siteId)],
);

export const residents = pgTable(
  'residents',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    apartmentId: uuid('apartment_id')
      .notNull()
      .references(() => apartments.id, { onDelete: 'cascade' }),
    role: text('role', { enum: ['main', 'family'] }).notNull(),
    firstName: text('first_name').notNull(),
    lastName: text('last_name').notNull(),
    email: text('email'),
    mobile: jsonb('mobile').$type<PhoneNumber>(),
    landlines: jsonb('landlines').$type<string[]>().notNull().default([]),
    remark: text('remark'),
    accessibleFloors: jsonb('accessible_floors').$type<string[]>().notNull().default([]),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index('residents_apartment_idx').on(t.apartmentId, t.createdAt),
    index('residents_site_idx').on(t.siteId),
    // One main resident per apartment; the others are family members.
    uniqueIndex('residents_one_main_idx').on(t.apartmentId).where(sql`role = 'main'`),
  ],
);

/**
 * PIN codes and RF cards. `scope` is what a code must be unique in: the site for cards and for PINs in
 * `pin` mode, the apartment for PINs in `apt-pin` mode (rewritten when the site's PIN mode changes).
 */
export const credentials = pgTable(
  'credentials',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    apartmentId: uuid('apartment_id')
      .notNull()
      .references(() => apartments.id, { onDelete: 'cascade' }),
    residentId: uuid('resident_id')
      .notNull()
      .references(() => residents.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['pin', 'card'] }).notNull(),
    value: text('value').notNull(),
    scope: text('scope').notNull(),
    validFrom: timestamp('valid_from', { withTimezone: true }),
    validUntil: timestamp('valid_until', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('credentials_unique_idx').on(t.siteId, t.kind, t.scope, t.value), index('credentials_resident_idx').on(t.residentId)],
);

/** Where a device is installed: a site's public area, a building, or an apartment. */
export const placements = pgTable(
  'device_placements',
  {
    mac: varchar('mac', { length: 12 })
      .primaryKey()
      .references(() => devices.mac, { onDelete: 'cascade' }),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'restrict' }),
    buildingId: uuid('building_id').references(() => buildings.id, { onDelete: 'restrict' }),
    apartmentId: uuid('apartment_id').references(() => apartments.id, { onDelete: 'restrict' }),
  },
  (t) => [index('device_placements_site_idx').on(t.siteId)],
);

/**
 * What the directory last rendered for a device: its documents' hashes. A change re-provisions a device
 * only when one of them changes. Not tied to the device row: a removed device's site still needs rendering.
 */
export const directoryRenders = pgTable('directory_renders', {
  mac: varchar('mac', { length: 12 }).primaryKey(),
  siteId: uuid('site_id').notNull(),
  timeZone: text('time_zone').notNull(),
  documents: jsonb('documents').$type<{ name: string; sha256: string; size: number }[]>().notNull(),
  renderedAt: timestamp('rendered_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Sites whose devices must be rendered again, written in the changing transaction so no change is lost
 * to a crash; the follower renders them, provisions what changed, and removes the rows it read.
 */
export const directoryChanges = pgTable('directory_changes', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  siteId: uuid('site_id').notNull(),
  accountId: uuid('account_id'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});

/** The sites a property manager manages (its account works for the sites' installer). */
export const siteManagers = pgTable(
  'site_managers',
  {
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    accountId: uuid('account_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.siteId, t.accountId] }), index('site_managers_account_idx').on(t.accountId)],
);
