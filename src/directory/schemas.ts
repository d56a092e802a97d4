import { z } from 'zod';
import { pageQuery } from '../shared/pagination.js';
import { patchOf } from '../shared/patch.js';
import { multiLine, nameText, singleLine } from '../shared/text.js';
import { callSteps } from './tables.js';

// Field rules from the vendor portal (seed 004 "Create Community", "Add a Single Community User",
// "Add Community Residents Using a Template").

const validTimeZone = (tz: string) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return /^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)*$/.test(tz);
  } catch {
    return false;
  }
};
const timeZoneSchema = z.string().max(64).refine(validTimeZone, 'an IANA time zone name such as Europe/Berlin');

/** A floor as the lift knows it: −10…128, or G0–G2 for ground floors. */
export const floorSchema = z
  .string()
  .regex(/^(-?\d{1,3}|G[0-2])$/, 'a floor: -10 to 128, or G0, G1, G2')
  .refine((f) => f.startsWith('G') || (Number(f) >= -10 && Number(f) <= 128), 'a floor: -10 to 128, or G0, G1, G2');

/** 1–6 digits; `#` allowed but not first (an APT#+PIN door phone could not split it otherwise). */
export const apartmentNumberSchema = z
  .string()
  .regex(/^[0-9][0-9#]{0,11}$/, 'digits and #, not starting with #')
  .refine((n) => {
    const digits = n.replace(/#/g, '').length;
    return digits >= 1 && digits <= 6;
  }, '1 to 6 digits');

/** At most 64 bytes (UTF-8), as the template says; never beginning like a spreadsheet formula. */
const personName = nameText(64, 1).refine((v) => Buffer.byteLength(v) <= 64, 'at most 64 bytes');

const contactPreferenceSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('group').describe('ring every indoor monitor and app of the apartment at once') }),
  z.strictObject({
    mode: z.literal('sequence'),
    steps: z
      .array(z.enum(callSteps))
      .min(1)
      .max(3)
      .refine((s) => new Set(s).size === s.length, 'a step must not repeat')
      .describe('rung in this order: app accounts, indoor monitors, landlines'),
    stepTimeoutSeconds: z.number().int().min(5).max(120).optional().describe('how long each step rings before the next (default 20 s)'),
  }),
]);

export const siteParams = z.strictObject({ siteId: z.uuid() });
export const buildingParams = z.strictObject({ buildingId: z.uuid() });
export const apartmentParams = z.strictObject({ apartmentId: z.uuid() });
export const residentParams = z.strictObject({ residentId: z.uuid() });
export const credentialParams = z.strictObject({ credentialId: z.uuid() });

const siteFields = {
  name: singleLine(128, 1),
  address: singleLine(256).nullable(),
  timeZone: timeZoneSchema,
  contactDisplay: z.enum(['first-last', 'last-first']).describe('the order of names in device contact lists'),
  pinMode: z.enum(['pin', 'apt-pin']).describe('pin: a PIN alone opens; apt-pin: apartment number, then PIN (e.g. 101 + 1234)'),
  communityCalls: z.boolean().describe('residents may call each other'),
  logUnopenedCalls: z.boolean().describe('the door log records calls from a door phone that were answered without the door being opened (seed 004 "Door log")'),
};
export const createSiteBody = z.strictObject({
  kind: z.enum(['community', 'office']),
  name: siteFields.name,
  address: siteFields.address.optional(),
  timeZone: siteFields.timeZone,
  contactDisplay: siteFields.contactDisplay.default('first-last'),
  pinMode: siteFields.pinMode.default('pin'),
  communityCalls: siteFields.communityCalls.default(false),
  logUnopenedCalls: siteFields.logUnopenedCalls.default(false),
  installerId: z.uuid().optional().describe('a distributor creates a site for this installer'),
});
export type CreateSiteInput = z.infer<typeof createSiteBody>;
export const patchSiteBody = patchOf(siteFields);
export type PatchSiteInput = z.infer<typeof patchSiteBody>;
export const siteSchema = z.object({
  id: z.uuid(),
  installerId: z.uuid(),
  kind: z.enum(['community', 'office']),
  name: z.string(),
  address: z.string().nullable(),
  timeZone: z.string(),
  contactDisplay: z.enum(['first-last', 'last-first']),
  pinMode: z.enum(['pin', 'apt-pin']),
  communityCalls: z.boolean(),
  logUnopenedCalls: z.boolean(),
  managedBy: z.enum(['ixg']).nullable().describe("'ixg': the buildings and units mirror the site's IXG system (uploaded by its IXGW-(T)GW gateway) and are read-only here"),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type SiteView = z.infer<typeof siteSchema>;
export const listSitesQuery = z.strictObject({ search: singleLine(128).optional().describe('part of the name'), ...pageQuery });

const buildingFields = {
  name: nameText(128, 1),
  groundFloor: floorSchema.nullable().describe('null: as configured on the device'),
  startFloor: floorSchema.nullable().describe('the first floor the lift serves; null: as configured on the device'),
};
export const createBuildingBody = z.strictObject({
  name: buildingFields.name,
  groundFloor: buildingFields.groundFloor.default(null),
  startFloor: buildingFields.startFloor.default(null),
});
export type CreateBuildingInput = z.infer<typeof createBuildingBody>;
export const patchBuildingBody = patchOf(buildingFields);
export type PatchBuildingInput = z.infer<typeof patchBuildingBody>;
export const buildingSchema = z.object({
  id: z.uuid(),
  siteId: z.uuid(),
  name: z.string(),
  groundFloor: z.string().nullable(),
  startFloor: z.string().nullable(),
  ixgNumber: z.string().nullable().describe("an IXG building's number (01); null outside IXG sites"),
  createdAt: z.string(),
});
export type BuildingView = z.infer<typeof buildingSchema>;

const apartmentFields = {
  number: apartmentNumberSchema,
  name: nameText(128).nullable(),
  floor: floorSchema.nullable(),
  contactPreference: contactPreferenceSchema,
  networkGroup: z.number().int().min(1).max(1000),
  webRelayId: z.number().int().min(0).max(10).describe('the web relay its residents open (0: none)'),
};
export const createApartmentBody = z.strictObject({
  number: apartmentFields.number,
  name: apartmentFields.name.default(null),
  floor: apartmentFields.floor.default(null),
  contactPreference: apartmentFields.contactPreference.default({ mode: 'group' }),
  networkGroup: apartmentFields.networkGroup.default(1),
  webRelayId: apartmentFields.webRelayId.default(0),
});
export type CreateApartmentInput = z.infer<typeof createApartmentBody>;
export const patchApartmentBody = patchOf(apartmentFields);
export type PatchApartmentInput = z.infer<typeof patchApartmentBody>;
export const apartmentSchema = z.object({
  id: z.uuid(),
  siteId: z.uuid(),
  buildingId: z.uuid(),
  number: z.string(),
  name: z.string().nullable(),
  floor: z.string().nullable(),
  contactPreference: contactPreferenceSchema,
  networkGroup: z.number().int(),
  webRelayId: z.number().int(),
  unitType: z.string().nullable().describe("an IXG unit's type (residential, entrance, commercial); null outside IXG sites"),
  createdAt: z.string(),
});
export type ApartmentView = z.infer<typeof apartmentSchema>;

const phoneDigits = z.string().regex(/^[0-9]{3,15}$/, '3 to 15 digits');
const residentFields = {
  firstName: personName,
  lastName: personName,
  email: z.email().max(254).nullable(),
  mobile: z
    .strictObject({ countryCode: z.string().regex(/^\+?[0-9]{1,4}$/, 'a telephone calling code such as +49').transform((c) => (c.startsWith('+') ? c : `+${c}`)), number: phoneDigits })
    .nullable(),
  landlines: z.array(phoneDigits).max(3).describe('Phone 1–3, rung by a sequence step `landlines`'),
  remark: multiLine(255).nullable(),
  accessibleFloors: z
    .array(z.union([floorSchema, z.literal('all')]))
    .max(140)
    .refine((f) => new Set(f).size === f.length, 'floors must not repeat'),
};
export const createResidentBody = z.strictObject({
  role: z.enum(['main', 'family']).optional().describe('default: main when the apartment has none yet, family otherwise'),
  firstName: residentFields.firstName,
  lastName: residentFields.lastName,
  email: residentFields.email.default(null),
  mobile: residentFields.mobile.default(null),
  landlines: residentFields.landlines.default([]),
  remark: residentFields.remark.default(null),
  accessibleFloors: residentFields.accessibleFloors.default([]),
});
export type CreateResidentInput = z.infer<typeof createResidentBody>;
export const patchResidentBody = patchOf(residentFields);
export type PatchResidentInput = z.infer<typeof patchResidentBody>;
export const residentSchema = z.object({
  id: z.uuid(),
  siteId: z.uuid(),
  apartmentId: z.uuid(),
  role: z.enum(['main', 'family']),
  firstName: z.string(),
  lastName: z.string(),
  email: z.string().nullable(),
  mobile: z.object({ countryCode: z.string(), number: z.string() }).nullable(),
  landlines: z.array(z.string()),
  remark: z.string().nullable(),
  accessibleFloors: z.array(z.string()),
  createdAt: z.string(),
});
export type ResidentView = z.infer<typeof residentSchema>;

const validity = {
  validFrom: z.iso.datetime({ offset: true }).nullable().default(null),
  validUntil: z.iso.datetime({ offset: true }).nullable().default(null),
};
export const createCredentialBody = z
  .discriminatedUnion('kind', [
    z.strictObject({ kind: z.literal('pin'), value: z.string().regex(/^[0-9]{4,8}$/, 'a PIN code: 4 to 8 digits'), ...validity }),
    z.strictObject({
      kind: z.literal('card'),
      value: z
        .string()
        .regex(/^[0-9A-Fa-f]{4,20}$/, 'an RF card number: 4 to 20 hexadecimal digits')
        .transform((v) => v.toUpperCase()),
      ...validity,
    }),
  ])
  .refine((c) => !c.validFrom || !c.validUntil || Date.parse(c.validFrom) < Date.parse(c.validUntil), { message: 'validFrom must be before validUntil', path: ['validUntil'] });
export type CreateCredentialInput = z.infer<typeof createCredentialBody>;
export const credentialSchema = z.object({
  id: z.uuid(),
  residentId: z.uuid(),
  apartmentId: z.uuid(),
  kind: z.enum(['pin', 'card']),
  value: z.string(),
  validFrom: z.string().nullable(),
  validUntil: z.string().nullable(),
  createdAt: z.string(),
});
export type CredentialView = z.infer<typeof credentialSchema>;

/** What the directory renders for one device, as the device fetches it. */
export const deviceDirectorySchema = z.object({
  mac: z.string(),
  siteId: z.uuid().nullable(),
  timeZone: z.string().nullable(),
  documents: z.array(z.object({ name: z.enum(['contacts', 'credentials']), sha256: z.string(), size: z.number().int(), content: z.unknown() })),
});
