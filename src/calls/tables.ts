import { boolean, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid, varchar } from 'drizzle-orm/pg-core';
import { accounts } from '../accounts/tables.js';
import { apartments, sites } from '../directory/tables.js';

/** Per site, how many units (apartments) may have app stations: the licence count, set by the installer. */
export const appLicences = pgTable('app_licences', {
  siteId: uuid('site_id')
    .primaryKey()
    .references(() => sites.id, { onDelete: 'cascade' }),
  units: integer('units').notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A resident's app, registered to an apartment by a one-time code: its own SIP account. Deleting the row
 * frees the apartment's slot and the account at once (Kamailio asks for credentials on every request).
 */
export const appStations = pgTable(
  'app_stations',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    apartmentId: uuid('apartment_id')
      .notNull()
      .references(() => apartments.id, { onDelete: 'cascade' }),
    installerId: uuid('installer_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'restrict' }),
    name: text('name').notNull(),
    /** From the same sequence as devices' numbers: one numbering plan for every SIP account. */
    sipNumber: varchar('sip_number', { length: 10 }).notNull().unique(),
    sipPassword: text('sip_password').notNull(),
    /** In an IXG unit: the app listing of the upload this station connected to (its address book, its door release). */
    ixgApp: varchar('ixg_app', { length: 8 }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index('app_stations_apartment_idx').on(t.apartmentId), index('app_stations_site_idx').on(t.siteId), uniqueIndex('app_stations_ixg_app_idx').on(t.siteId, t.ixgApp)],
);

/** A one-time app registration code: only its SHA-256 is kept; used once, valid 24 h. */
export const appRegistrationCodes = pgTable(
  'app_registration_codes',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    codeHash: varchar('code_hash', { length: 64 }).notNull(),
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    apartmentId: uuid('apartment_id')
      .notNull()
      .references(() => apartments.id, { onDelete: 'cascade' }),
    createdBy: uuid('created_by').references(() => accounts.id, { onDelete: 'set null' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true }),
    appStationId: uuid('app_station_id').references(() => appStations.id, { onDelete: 'set null' }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('app_registration_codes_hash_idx').on(t.codeHash), index('app_registration_codes_apartment_idx').on(t.apartmentId)],
);

/** The last registration Kamailio saved for a SIP account (device or app station), by number. */
export const sipRegistrations = pgTable('sip_registrations', {
  sipNumber: varchar('sip_number', { length: 10 }).primaryKey(),
  /** When the registration lapses; at or before now: unregistered. */
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
  lastRegisteredAt: timestamp('last_registered_at', { withTimezone: true }),
  transport: text('transport'),
  source: text('source'),
  userAgent: text('user_agent'),
  /**
   * When Kamailio handled the REGISTER (µs): reports from different Kamailio workers may arrive out of
   * order (an unregister after the registration that followed it); an older one never overwrites a newer.
   */
  reportedAt: timestamp('reported_at', { withTimezone: true, precision: 6 }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
});

export const callOutcomes = ['ringing', 'answered', 'completed', 'no-answer', 'busy', 'cancelled', 'refused', 'failed'] as const;
export type CallOutcome = (typeof callOutcomes)[number];

/** A call as Kamailio reported it: routed (or refused), answered, ended. */
export const calls = pgTable(
  'calls',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** The SIP Call-ID: Kamailio's reports name the call by it. */
    callId: text('call_id').notNull(),
    siteId: uuid('site_id').references(() => sites.id, { onDelete: 'cascade' }),
    caller: varchar('caller', { length: 10 }).notNull(),
    /** What the caller dialled (an apartment number or a station's SIP number). */
    dialled: text('dialled').notNull(),
    apartmentId: uuid('apartment_id').references(() => apartments.id, { onDelete: 'set null' }),
    answeredBy: varchar('answered_by', { length: 10 }),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    answeredAt: timestamp('answered_at', { withTimezone: true }),
    endedAt: timestamp('ended_at', { withTimezone: true }),
    outcome: text('outcome', { enum: callOutcomes }).notNull(),
    /** The SIP status that ended an unanswered call, or the refusal. */
    status: integer('status'),
    reason: text('reason'),
    /** A call an IXG gateway placed: the IXG station it placed it for (X-IXG-Station). */
    ixgStation: varchar('ixg_station', { length: 8 }),
  },
  (t) => [uniqueIndex('calls_call_id_idx').on(t.callId), index('calls_site_idx').on(t.siteId, t.startedAt)],
);

export const doorOutcomes = ['opened', 'pending', 'refused', 'failed', 'expired', 'canceled', 'not-opened'] as const;
export type DoorOutcome = (typeof doorOutcomes)[number];
export const doorRequesters = ['installer', 'sub-installer', 'property-manager', 'distributor', 'app'] as const;
export type DoorRequester = (typeof doorRequesters)[number];

/**
 * A door opened by a relay, as the door phone reported it on devices/{MAC}/events, with what the cloud
 * could verify of it (docs/device-protocol.md, "Events"): `*_verified` true, checked against what the
 * cloud knows; false, checked and not confirmed (or required and missing); null, nothing to check (or
 * recorded before the checks existed).
 */
export const doorEvents = pgTable(
  'door_events',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    siteId: uuid('site_id').references(() => sites.id, { onDelete: 'cascade' }),
    mac: varchar('mac', { length: 12 }).notNull(),
    /** 1-based relay index, as in the device's configuration (RELAY.Name1 …). */
    relay: integer('relay').notNull(),
    /** True: one of the relays the cloud configured for the device (others are refused since 0007). */
    relayVerified: boolean('relay_verified').notNull().default(false),
    method: text('method').notNull(),
    /** The station that released the door (its SIP number), when a call did: the device's word. */
    byStation: varchar('by_station', { length: 32 }),
    /** True: a party, other than the device, of the verified call. */
    byVerified: boolean('by_verified'),
    callId: text('call_id'),
    /** An IXG gateway's report: the IXG station whose door it released. */
    ixgStation: varchar('ixg_station', { length: 8 }),
    /** The lift floors the PIN or card enabled, as the device reported them (null: not reported). */
    floors: jsonb('floors').$type<string[]>(),
    /** True: a call recorded by the SIP server, answered, with this device as a party, around the event's time. */
    callVerified: boolean('call_verified'),
    /** The device's own event id: a re-sent report is recorded once. */
    eventId: text('event_id').notNull(),
    /** When it happened: the device's `at` clamped to the receive time's window (the receive time without one). */
    occurredAt: timestamp('occurred_at', { withTimezone: true }).notNull(),
    /** The device's `at` as it sent it (null: none). */
    reportedAt: timestamp('reported_at', { withTimezone: true }),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
    /**
     * The door log's outcome: `opened` (a device reported it), or for an opening asked through the cloud
     * `pending` until its job ends (`opened`, `failed`, `expired`, `canceled`) or `refused` at once (reason).
     */
    outcome: text('outcome', { enum: doorOutcomes }).notNull().default('opened'),
    reason: text('reason'),
    /** The open-door job of an opening asked through the cloud. */
    jobId: uuid('job_id'),
    /** Who asked the cloud to open: an account (installer, sub-installer, property manager) or an app station. */
    requester: text('requester', { enum: doorRequesters }),
    requestedBy: text('requested_by'),
    /** The apartment the opening is of: the app's or the station's that opened, or the device's own. */
    apartmentId: uuid('apartment_id').references(() => apartments.id, { onDelete: 'set null' }),
  },
  (t) => [
    uniqueIndex('door_events_device_event_idx').on(t.mac, t.eventId),
    index('door_events_site_idx').on(t.siteId, t.occurredAt),
    index('door_events_job_idx').on(t.jobId),
    index('door_events_apartment_idx').on(t.apartmentId, t.occurredAt),
    index('door_events_mac_idx').on(t.mac, t.occurredAt),
  ],
);

/** Status of Apps, one row per site and day: the most units with apps and apps registered seen that day. */
export const appStatusDays = pgTable(
  'app_status_days',
  {
    siteId: uuid('site_id')
      .notNull()
      .references(() => sites.id, { onDelete: 'cascade' }),
    day: text('day').notNull(),
    unitsWithApps: integer('units_with_apps').notNull(),
    activeApps: integer('active_apps').notNull(),
  },
  (t) => [primaryKey({ columns: [t.siteId, t.day] })],
);
