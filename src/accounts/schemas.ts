import { z } from 'zod';
import { singleLine } from '../shared/text.js';

export const roleSchema = z.enum(['distributor', 'installer']);
export type Role = z.infer<typeof roleSchema>;

export const accountSchema = z.object({
  id: z.uuid(),
  role: roleSchema,
  name: z.string(),
  email: z.string(),
  createdAt: z.string().describe('ISO-8601'),
});
export type AccountView = z.infer<typeof accountSchema>;

export const createInstallerBody = z.strictObject({
  name: singleLine(128, 1),
  email: z.email().max(254).transform((e) => e.toLowerCase()),
});

export const issuedTokenSchema = z.object({
  id: z.uuid().describe('token id, used to revoke it'),
  token: z.string().describe('bearer token; shown only once'),
});
