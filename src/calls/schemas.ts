import { z } from 'zod';
import { singleLine } from '../shared/text.js';

// Mobile app service (seed 000 "Mobile App Service"): a site's licences count units (apartments) with
// apps, 1 licence per unit and up to 8 apps per unit; an app registers to its apartment by a one-time
// QR code and gets its own SIP account and the apartment's address book.

export const MAX_APPS_PER_APARTMENT = 8;
const MAX_LICENCE_UNITS = 100_000;

export const appLicencesBody = z.strictObject({
  units: z.number().int().min(0).max(MAX_LICENCE_UNITS).describe('how many units (apartments) of the site may have apps; 1 licence is 1 unit with up to 8 apps'),
  release: z
    .array(z.uuid())
    .max(1000)
    .optional()
    .describe("apartments of the site that lose their licence first: their app stations (SIP accounts fail at once) and registration codes are removed"),
});
export type AppLicencesChange = z.infer<typeof appLicencesBody>;

export const appLicencesSchema = z.object({
  units: z.number().int().describe('licensed units (0 without a licence)'),
  used: z.number().int().describe('units (apartments) of the site with at least one app station'),
});
export type AppLicencesView = z.infer<typeof appLicencesSchema>;
export const appLicencesChangeSchema = appLicencesSchema.extend({
  appStationsRemoved: z.number().int().describe('app stations of the released apartments, removed'),
  codesRevoked: z.number().int().describe('unredeemed registration codes of the released apartments, revoked'),
});

export const appStationParams = z.strictObject({ appStationId: z.uuid() });
/** Any text: a malformed code is answered like an unknown one (404), so nothing can be learnt by probing. */
export const registrationCodeParams = z.strictObject({ code: z.string().max(128) });

export const appRegistrationSchema = z.object({
  id: z.uuid(),
  code: z.string().describe('the one-time code (shown only now; only its SHA-256 is kept)'),
  expiresAt: z.string().describe('the code is valid until then (24 h)'),
  registrationUrl: z.string().describe('where the app redeems the code: POST it'),
  qr: z.object({
    text: z.string().describe('what the QR code encodes: the registration URL'),
    png: z.string().describe('the QR code as a data URL (data:image/png;base64,…)'),
  }),
});
export type AppRegistrationView = z.infer<typeof appRegistrationSchema>;

export const exchangeBody = z
  .strictObject({ name: singleLine(64, 1).optional().describe("the app station's name (default: App n)") })
  .nullish()
  .describe('optional: a request without a body makes a station with the default name');
export type ExchangeInput = z.infer<typeof exchangeBody>;

const sipTransports = ['udp', 'tcp', 'tls', 'ws', 'wss'] as const;
const sipServerSchema = z.object({ transport: z.enum(sipTransports), host: z.string(), port: z.number().int(), url: z.string().optional() });

/** Where an app station registers: the SIP domain and the WebSocket servers of the deployment's SIP server. */
export interface AppSipAccess {
  domain: string;
  servers: z.infer<typeof sipServerSchema>[];
}

const addressBookEntrySchema = z.object({
  sipNumber: z.string(),
  name: z.string(),
  type: z.enum(['door-phone', 'guard-phone', 'indoor-monitor', 'ixg-station']).describe("an IXG unit's stations are 'door-phone' (in an entrance unit) or 'ixg-station'"),
  location: z.string().nullable(),
  doorRelease: z.boolean().describe('the station can open a door from a call (a door or guard phone with an enabled relay and a DTMF code; an IXG station where the unit\'s app listing grants door release)'),
  ixgStation: z.string().optional().describe('an IXG station, reached through its gateway (`sipNumber` is the gateway\'s): its IXG station number'),
});
export type AddressBookEntry = z.infer<typeof addressBookEntrySchema>;

export const appStationSchema = z.object({ id: z.uuid(), name: z.string(), sipNumber: z.string(), ixgApp: z.string().nullable().describe("in an IXG unit: the upload's app listing it connected to"), createdAt: z.string() });
export type AppStationView = z.infer<typeof appStationSchema>;

export const exchangeSchema = z.object({
  station: z.object({ id: z.uuid(), name: z.string(), sipNumber: z.string(), apartmentId: z.uuid(), siteId: z.uuid() }),
  sip: z.object({
    username: z.string().describe('the SIP user name: the station number'),
    password: z.string().describe('shown only now'),
    domain: z.string().nullable().describe('the SIP domain (null while SIP is off)'),
    servers: z.array(sipServerSchema).describe('where to register (empty while SIP is off)'),
  }),
  addressBook: z.array(addressBookEntrySchema),
});
export type ExchangeView = z.infer<typeof exchangeSchema>;
