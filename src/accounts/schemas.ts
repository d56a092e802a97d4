import { z } from 'zod';
import { singleLine } from '../shared/text.js';

const roleSchema = z.enum(['distributor', 'installer', 'sub-installer', 'property-manager']);

export const accountSchema = z.object({
  id: z.uuid(),
  role: roleSchema,
  name: z.string(),
  email: z.string(),
  parentId: z.uuid().nullable().describe('the installer a sub-installer or property manager works for'),
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

export const createPropertyManagerBody = z.strictObject({
  name: singleLine(128, 1),
  email: z.email().max(254).transform((e) => e.toLowerCase()),
  siteIds: z.array(z.uuid()).min(1).max(500).describe('the sites the property manager manages'),
});
export const propertyManagerSitesBody = z.strictObject({ siteIds: z.array(z.uuid()).min(1).max(500) });
