import { isIP } from 'node:net';
import { z } from 'zod';
import { commandStates, type CommandStatus } from '../provisioning/channel.js';
import { floorSchema } from '../directory/schemas.js';
import { cleanDeviceText, singleLine } from '../shared/text.js';

// What devices publish, validated here at the boundary (docs/device-protocol.md): nothing a device sends
// reaches the engine or the database unchecked.

/** A configuration hash as devices report it: the SHA-256 of the applied configuration, or "factory". */
const configHashSchema = z.string().regex(/^(factory|[0-9a-f]{64})$/, 'the hex SHA-256 of the applied configuration, or "factory"');

const helloSchema = z.object({
  model: singleLine(64, 1),
  firmware: singleLine(64, 1),
  ip: z
    .string()
    .max(64)
    .refine((v) => isIP(v) !== 0, 'not an IP address')
    .optional(),
  uptime: z.number().int().min(0).optional(),
  configHash: configHashSchema.optional(),
});
export type Hello = z.infer<typeof helloSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

function json(payload: Buffer): Parsed<unknown> {
  try {
    return { ok: true, value: JSON.parse(payload.toString('utf8')) };
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
}

/** A JSON payload checked against a schema; the reason names every field that is wrong. */
function parseJson<T>(schema: z.ZodType<T>, payload: Buffer): Parsed<T> {
  const raw = json(payload);
  if (!raw.ok) return raw;
  const parsed = schema.safeParse(raw.value);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues.map((i) => `${i.path.join('.') || 'payload'}: ${i.message}`).join('; ') };
  return { ok: true, value: parsed.data };
}

export const parseHello = (payload: Buffer): Parsed<Hello> => parseJson(helloSchema, payload);

const MAX_ERROR_CODE = 64;
const MAX_ERROR_MESSAGE = 512;
const stageSchema = z.string().regex(/^[a-z][a-z-]{0,31}$/);
/** A status's `result` is kept up to this size (its JSON text); its kind's schema reads it further. */
export const MAX_RESULT_BYTES = 4096;

/**
 * A command status. Only `state` must be right; every other field is kept when valid and dropped (or,
 * for the error's text, cleaned of control characters) when not, so a device's final answer is never
 * lost to a malformed detail.
 */
export function parseStatus(payload: Buffer): Parsed<CommandStatus> & { dropped?: string[] } {
  const raw = json(payload);
  if (!raw.ok) return raw;
  const body = raw.value as Record<string, unknown> | null;
  if (!body || typeof body !== 'object' || Array.isArray(body)) return { ok: false, reason: 'payload is not a JSON object' };
  const state = body.state;
  if (typeof state !== 'string' || !(commandStates as readonly string[]).includes(state)) {
    return { ok: false, reason: `state must be one of ${commandStates.join(', ')}` };
  }
  const status: CommandStatus = { state: state as CommandStatus['state'] };
  const dropped: string[] = [];
  const { progress, stage, error, configHash, result } = body;
  if (result !== undefined) {
    if (result && typeof result === 'object' && !Array.isArray(result) && Buffer.byteLength(JSON.stringify(result)) <= MAX_RESULT_BYTES) status.result = result as Record<string, unknown>;
    else dropped.push('result');
  }
  if (progress !== undefined) {
    if (Number.isInteger(progress) && (progress as number) >= 0 && (progress as number) <= 100) status.progress = progress as number;
    else dropped.push('progress');
  }
  if (stage !== undefined) {
    if (stageSchema.safeParse(stage).success) status.stage = stage as string;
    else dropped.push('stage');
  }
  if (configHash !== undefined) {
    if (configHashSchema.safeParse(configHash).success) status.configHash = configHash as string;
    else dropped.push('configHash');
  }
  if (error !== undefined || state === 'failed') {
    const e = (error && typeof error === 'object' ? error : {}) as { code?: unknown; message?: unknown };
    const code = typeof e.code === 'string' ? cleanDeviceText(e.code.trim(), MAX_ERROR_CODE) : '';
    const message = typeof e.message === 'string' ? cleanDeviceText(e.message, MAX_ERROR_MESSAGE) : '';
    if (typeof e.code !== 'string' || typeof e.message !== 'string' || code !== e.code || message !== e.message) dropped.push('error (cleaned)');
    status.error = { code: code || 'device_failed', message: message || 'the device reported failure' };
  }
  return dropped.length ? { ok: true, value: status, dropped } : { ok: true, value: status };
}

/** A door phone's report that a relay opened (docs/device-protocol.md, "Events"). */
const doorOpenedSchema = z.strictObject({
  type: z.literal('door-opened'),
  /** The device's own id for the event: a re-sent report is recorded once. */
  eventId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  relay: z.number().int().min(1).max(8),
  method: z.enum(['dtmf', 'pin', 'card', 'face', 'bluetooth', 'nfc', 'button', 'remote']),
  by: z.string().regex(/^[0-9]{1,32}$/).optional().describe('SIP number of the station that sent the DTMF'),
  callId: singleLine(256, 1).optional(),
  at: z.iso.datetime({ offset: true }).optional(),
  /** A remote opening: the id of the open-door command it carried out. */
  jobId: z.uuid().optional(),
  /** An IXG gateway's report: the IXG station whose door it released (docs/device-protocol.md, "IXG calls"). */
  station: z.string().regex(/^[0-9]{1,8}$/).optional(),
  /** The lift floors a PIN or card enabled (its credentials entry's `floors`), or `["all"]`. */
  floors: z
    .array(z.union([floorSchema, z.literal('all')]))
    .max(141)
    .refine((f) => new Set(f).size === f.length, 'floors must not repeat')
    .optional(),
});
export type DeviceEvent = z.infer<typeof doorOpenedSchema>;

export const parseDeviceEvent = (payload: Buffer): Parsed<DeviceEvent> => parseJson(doorOpenedSchema, payload);
