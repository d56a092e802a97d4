import { z } from 'zod';
import { MAX_AUTOP_LINE, MAX_AUTOP_LINES, MAX_AUTOP_TEXT } from './autop.js';
import { macInput } from '../mac-library/mac.js';
import { pageQuery } from '../shared/pagination.js';
import { JOB_KIND_PATTERN, jobStates } from './tables.js';

const MAX_EXPIRY_SECONDS = 90 * 24 * 3600;

export const commandsInput = z
  .union([z.string().max(MAX_AUTOP_TEXT), z.array(z.string().max(MAX_AUTOP_LINE)).max(MAX_AUTOP_LINES)])
  .describe(`Autop commands, "Key = Value" one per line: a text with newlines or an array of lines; at most ${MAX_AUTOP_LINES} commands`);

const expiry = {
  expiresInSeconds: z.number().int().min(10).max(MAX_EXPIRY_SECONDS).optional().describe('how long the job may wait for the device (default 7 days)'),
};

export const autopBody = z.strictObject({ commands: commandsInput, ...expiry });
export const simpleJobBody = z.strictObject({ ...expiry }).nullish();
export const resetBody = z.strictObject({ mode: z.enum(['factory', 'config']), ...expiry });
export const connectTypeBody = z.strictObject({ connectType: z.enum(['udp', 'tcp', 'tls']).describe('SIP transmission type'), ...expiry });
export const batchBody = z.strictObject({
  macs: z.array(macInput).min(1).max(500, 'at most 500 devices per batch Autop'),
  commands: commandsInput,
  mode: z.enum(['regular', 'once']),
  ...expiry,
});

export const jobSchema = z.object({
  id: z.uuid(),
  kind: z.string().describe('the job kind (autop, autop-once, provision, connect-type, reboot, reset, upgrade: the kinds this deployment registered)'),
  mac: z.string(),
  batchId: z.uuid().nullable(),
  state: z.enum(jobStates),
  progress: z.number().int(),
  stage: z.string().nullable().describe('what the device last reported doing, by kind: within an upgrade downloading, installing or rebooting'),
  attempts: z.number().int(),
  params: z.record(z.string(), z.unknown()),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  result: z.unknown().describe("what the device answered, in its kind's result schema (null when the kind keeps none)"),
  createdAt: z.string(),
  updatedAt: z.string(),
  expiresAt: z.string(),
  finishedAt: z.string().nullable(),
});
export type JobView = z.infer<typeof jobSchema>;

const droppedSchema = z.array(z.object({ line: z.number().int(), text: z.string(), reason: z.string() }));
export const autopLineSchema = z.object({ key: z.string(), value: z.string() });

export const acceptedJobSchema = z.object({ job: jobSchema, dropped: droppedSchema.optional() });
export const autopSetSchema = z.object({ mac: z.string(), commands: z.array(z.string()), updatedAt: z.string().nullable() });
export const acceptedAutopSchema = z.object({ job: jobSchema, autop: autopSetSchema, dropped: droppedSchema });
export const batchAcceptedSchema = z.object({ batchId: z.uuid(), jobs: z.array(jobSchema), dropped: droppedSchema });
export const batchProgressSchema = z.object({
  batchId: z.uuid(),
  mode: z.enum(['regular', 'once']),
  commands: z.array(z.string()),
  devices: z.number().int(),
  counts: z.record(z.enum(jobStates), z.number().int()),
  finished: z.boolean(),
  createdAt: z.string(),
});

export const listJobsQuery = z.strictObject({
  mac: macInput.optional(),
  state: z.enum(jobStates).optional(),
  kind: z.string().regex(JOB_KIND_PATTERN, 'not a job kind').optional(),
  batchId: z.uuid().optional(),
  ...pageQuery,
});

export const auditQuery = z.strictObject({ mac: macInput.optional(), jobId: z.uuid().optional(), ...pageQuery });
export const auditEntrySchema = z.object({
  id: z.uuid(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  mac: z.string().nullable(),
  jobId: z.uuid().nullable(),
  batchId: z.uuid().nullable(),
  details: z.record(z.string(), z.unknown()),
});
