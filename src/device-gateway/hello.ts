import { isIP } from 'node:net';
import { z } from 'zod';

// The hello a device publishes after every connect (docs/device-protocol.md).
export const helloSchema = z.object({
  model: z.string().trim().min(1).max(64),
  firmware: z.string().trim().min(1).max(64),
  ip: z
    .string()
    .refine((v) => isIP(v) !== 0, 'not an IP address')
    .optional(),
  uptime: z.number().int().min(0).optional(),
  configHash: z.string().min(1).max(128).optional(),
});
export type Hello = z.infer<typeof helloSchema>;

export function parseHello(payload: Buffer): { ok: true; hello: Hello } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, reason: 'payload is not JSON' };
  }
  const parsed = helloSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues.map((i) => `${i.path.join('.') || 'payload'}: ${i.message}`).join('; ') };
  return { ok: true, hello: parsed.data };
}
