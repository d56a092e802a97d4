import { z } from 'zod';
import { singleLine } from '../shared/text.js';
import { macInput, newMacInput } from './mac.js';
import { pageQuery } from '../shared/pagination.js';

export const macEntrySchema = z.object({
  mac: z.string().describe('12 uppercase hex digits'),
  installer: z.object({ id: z.uuid(), name: z.string() }),
  owner: z.string().nullable().describe("the bound device's name, or null when no device is bound"),
  lastSeenAt: z.string().nullable(),
  createdAt: z.string(),
});
export type MacEntry = z.infer<typeof macEntrySchema>;

export const addMacBody = z.strictObject({
  mac: newMacInput,
  installerId: z.uuid().optional().describe('required for a distributor: the installer whose library receives the MAC'),
});

export const importQuery = z.strictObject({
  installerId: z.uuid().optional().describe('required for a distributor: the installer whose library receives the MACs'),
});

export const importResultSchema = z.object({
  added: z.number().int(),
  skipped: z.number().int().describe('duplicates within the file or MACs already registered'),
  invalid: z.array(z.object({ line: z.number().int(), value: z.string(), reason: z.string() })),
});

export const listMacQuery = z.strictObject({
  search: singleLine(64).optional().describe("part of a MAC (any separator) or of the bound device's name"),
  bound: z.enum(['true', 'false']).optional().transform((v) => (v === undefined ? undefined : v === 'true')),
  ...pageQuery,
});

export const macParams = z.strictObject({ mac: macInput });
