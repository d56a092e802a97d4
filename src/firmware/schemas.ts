import { z } from 'zod';
import { multiLine, singleLine } from '../shared/text.js';
import { macInput } from '../mac-library/mac.js';
import { pageQuery } from '../shared/pagination.js';

export const firmwareSchema = z.object({
  id: z.uuid(),
  model: z.string(),
  version: z.string(),
  changelog: z.string(),
  size: z.number().int().describe('bytes'),
  sha256: z.string().describe('hex SHA-256 of the image'),
  createdAt: z.string(),
});
export type FirmwareView = z.infer<typeof firmwareSchema>;

export const firmwareParams = z.strictObject({ id: z.uuid() });
export const listFirmwareQuery = z.strictObject({ model: singleLine(32).optional(), ...pageQuery });

/** The text fields of a firmware upload (multipart/form-data beside the `file` part). */
export const firmwareUploadFields = z.strictObject({
  model: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/, 'a model name such as R29, X916 or IXGW-TGW'),
  version: singleLine(40, 1),
  changelog: multiLine(4000).default(''),
});

export const upgradeStatuses = ['pending', 'processing', 'executed'] as const;
export type UpgradeStatus = (typeof upgradeStatuses)[number];
export const deviceUpgradeStates = ['pending', 'downloading', 'installing', 'rebooting', 'succeeded', 'failed', 'canceled'] as const;
export type DeviceUpgradeState = (typeof deviceUpgradeStates)[number];

const MAX_EXPIRY_SECONDS = 90 * 24 * 3600;
const futureInstant = z.iso.datetime({ offset: true }).describe('ISO-8601 instant in the future; absent means now');

export const createUpgradeBody = z.strictObject({
  firmwareId: z.uuid(),
  macs: z.array(macInput).min(1).max(10_000),
  at: futureInstant.optional(),
  resetAfterUpgrade: z.boolean().default(false).describe("reset the device's configuration after upgrading"),
  expiresInSeconds: z.number().int().min(60).max(MAX_EXPIRY_SECONDS).optional().describe('how long after the start an offline device may still begin (default 7 days)'),
});
export type CreateUpgrade = z.infer<typeof createUpgradeBody>;

export const patchUpgradeBody = z
  .strictObject({
    at: futureInstant.nullable().optional().describe('a new time; null means now'),
    macs: z.array(macInput).min(1).max(10_000).optional(),
    resetAfterUpgrade: z.boolean().optional(),
  })
  .refine((b) => b.at !== undefined || b.macs !== undefined || b.resetAfterUpgrade !== undefined, 'give at, macs or resetAfterUpgrade');
export type PatchUpgrade = z.infer<typeof patchUpgradeBody>;

export const upgradeParams = z.strictObject({ id: z.uuid() });
export const deleteUpgradeQuery = z.strictObject({
  force: z
    .enum(['true', 'false'])
    .default('false')
    .transform((v) => v === 'true')
    .describe('for an upgrade in progress: cancel the devices that have not started'),
});
export const listUpgradesQuery = z.strictObject({
  status: z.enum(upgradeStatuses).optional(),
  model: singleLine(32).optional(),
  ...pageQuery,
});

const countsSchema = z.record(z.enum(deviceUpgradeStates), z.number().int());
export const upgradeSchema = z.object({
  id: z.uuid(),
  firmwareId: z.uuid().nullable().describe('null once the firmware was deleted from the catalogue'),
  version: z.string(),
  model: z.string(),
  devices: z.number().int().describe('how many devices the upgrade covers'),
  macs: z.array(z.string()),
  status: z.enum(upgradeStatuses),
  upgradeTime: z.string().describe('when the upgrade starts (or started)'),
  resetAfterUpgrade: z.boolean(),
  counts: countsSchema,
  succeeded: z.number().int(),
  failed: z.number().int(),
  skipped: z.array(z.object({ mac: z.string(), reason: z.string() })).describe('devices left out, e.g. already on the version'),
  startedAt: z.string().nullable(),
  executedAt: z.string().nullable().describe('when its last device finished (null while any is unfinished)'),
  createdTime: z.string(),
});
export type UpgradeView = z.infer<typeof upgradeSchema>;

export const upgradeDeviceSchema = z.object({
  mac: z.string(),
  state: z.enum(deviceUpgradeStates),
  percent: z.number().int().describe('download progress'),
  reason: z.object({ code: z.string(), message: z.string() }).nullable().describe('why it failed or was canceled'),
  jobId: z.uuid().nullable(),
  updatedAt: z.string().nullable(),
});
export const upgradeDetailSchema = upgradeSchema.extend({ deviceStates: z.array(upgradeDeviceSchema) });
export type UpgradeDetail = z.infer<typeof upgradeDetailSchema>;
