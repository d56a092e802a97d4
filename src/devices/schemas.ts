import { z } from 'zod';
import { singleLine } from '../shared/text.js';
import { macInput } from '../mac-library/mac.js';
import { pageQuery } from '../shared/pagination.js';
import { accessMethods } from './tables.js';

// Device type codes as in the vendor portal's template, plus the Aiphone IXGW-(T)GW gateway adaptor.
export const deviceTypeCodes = ['0', '1', '2', '3', '50', 'ixgw'] as const;
export type DeviceTypeCode = (typeof deviceTypeCodes)[number];
export const deviceTypeNames: Record<DeviceTypeCode, string> = {
  '0': 'multi-tenant door phone',
  '1': 'single-tenant door phone',
  '2': 'indoor monitor',
  '3': 'guard phone',
  '50': 'access control',
  ixgw: 'Aiphone IXGW-(T)GW gateway adaptor',
};

const deviceTypeSchema = z
  .union([z.literal(0), z.literal(1), z.literal(2), z.literal(3), z.literal(50), z.literal('ixgw')])
  .describe('0 multi-tenant door phone, 1 single-tenant door phone, 2 indoor monitor, 3 guard phone, 50 access control, "ixgw" Aiphone IXGW-(T)GW gateway');
export type DeviceType = z.infer<typeof deviceTypeSchema>;
export const typeToCode = (t: DeviceType): DeviceTypeCode => String(t) as DeviceTypeCode;
export const codeToType = (c: string): DeviceType => (c === 'ixgw' ? 'ixgw' : (Number(c) as DeviceType));

const relaySchema = z.strictObject({
  name: singleLine(64, 1),
  dtmf: z
    .string()
    .regex(/^[0-9*#]{1,4}$/, 'DTMF code: 1 to 4 of 0-9, * and #')
    .default('#'),
  enabled: z.boolean().default(true),
  accessMethods: z
    .array(z.enum(accessMethods))
    .max(accessMethods.length)
    .refine((m) => new Set(m).size === m.length, 'access methods must not repeat')
    .default(['homepage', 'talking-page']),
});

const deviceFields = {
  name: singleLine(128, 1),
  type: deviceTypeSchema,
  networkGroup: z.number().int().min(1).max(1000).describe('devices in the same local network share a network group (they call each other by IP)'),
  location: singleLine(128).nullable(),
  relays: z.array(relaySchema).max(8),
  allowMonitoring: z.boolean(),
};

export const createDeviceBody = z.strictObject({
  mac: macInput,
  name: deviceFields.name,
  type: deviceFields.type,
  networkGroup: deviceFields.networkGroup.default(1),
  location: deviceFields.location.optional(),
  relays: deviceFields.relays.default([]),
  allowMonitoring: deviceFields.allowMonitoring.default(false),
});
export type CreateDeviceInput = z.infer<typeof createDeviceBody>;

export const patchDeviceBody = z
  .strictObject({
    name: deviceFields.name.optional(),
    type: deviceFields.type.optional(),
    networkGroup: deviceFields.networkGroup.optional(),
    location: deviceFields.location.optional(),
    relays: deviceFields.relays.optional(),
    allowMonitoring: deviceFields.allowMonitoring.optional(),
    siteId: z.uuid().nullable().optional().describe('place the device in this site (its public area unless buildingId or apartmentId says more); null takes it out of the directory'),
    buildingId: z.uuid().nullable().optional().describe('with siteId: the building the device serves'),
    apartmentId: z.uuid().nullable().optional().describe('with siteId: the apartment (indoor monitors, single-tenant door phones)'),
  })
  .refine((b) => Object.keys(b).length > 0, 'give at least one field to change')
  .refine((b) => b.siteId !== undefined || (b.buildingId === undefined && b.apartmentId === undefined), { message: 'give siteId with buildingId or apartmentId', path: ['siteId'] })
  .refine((b) => b.siteId !== null || (!b.buildingId && !b.apartmentId), { message: 'siteId null takes the device out of the directory: give no building or apartment', path: ['siteId'] });
export type PatchDeviceInput = z.infer<typeof patchDeviceBody>;

export const deviceSchema = z.object({
  mac: z.string(),
  installerId: z.uuid(),
  name: z.string(),
  type: deviceTypeSchema,
  typeName: z.string(),
  networkGroup: z.number().int(),
  location: z.string().nullable(),
  relays: z.array(z.object({ name: z.string(), dtmf: z.string(), enabled: z.boolean(), accessMethods: z.array(z.enum(accessMethods)) })),
  allowMonitoring: z.boolean(),
  sipNumber: z.string(),
  status: z.enum(['online', 'offline']),
  lastConnectedAt: z.string().nullable(),
  ip: z.string().nullable(),
  model: z.string().nullable(),
  firmware: z.string().nullable(),
  siteId: z.uuid().nullable().describe('where the device is placed in the directory (null: nowhere)'),
  buildingId: z.uuid().nullable(),
  apartmentId: z.uuid().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type DeviceView = z.infer<typeof deviceSchema>;

export const createdDeviceSchema = deviceSchema.extend({
  sip: z.object({ number: z.string(), password: z.string().describe('shown only in this response') }),
});

export const listDevicesQuery = z.strictObject({
  search: singleLine(128).optional().describe('part of the MAC, name or SIP number'),
  status: z.enum(['online', 'offline']).optional(),
  type: z.enum(deviceTypeCodes).optional(),
  siteId: z.uuid().optional().describe('devices placed in this site'),
  buildingId: z.uuid().optional().describe('devices placed in this building (not its apartments)'),
  apartmentId: z.uuid().optional().describe('devices placed in this apartment'),
  ...pageQuery,
});
