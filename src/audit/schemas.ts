import { z } from 'zod';
import { pageQuery } from '../shared/pagination.js';

export const writeSchema = z.object({
  id: z.number().int(),
  at: z.string(),
  accountId: z.uuid().describe('the account that made the write'),
  installerId: z.uuid().nullable().describe('whose data it wrote'),
  siteId: z.uuid().nullable(),
  action: z.string().describe('e.g. device.created, mac.added, resident.created, credential.revoked'),
  subject: z.string().nullable().describe('what was written: an id or a MAC'),
  details: z.unknown(),
});

export const listWritesQuery = z.strictObject({
  siteId: z.uuid().optional(),
  subject: z.string().max(64).regex(/^[0-9A-Za-z-]+$/, 'an id or a MAC').optional().describe('an id or a MAC (12 hex digits, upper case)'),
  ...pageQuery,
});
