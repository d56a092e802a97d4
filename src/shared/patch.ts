import { z } from 'zod';

/** A PATCH body: any of the fields, at least one of them. */
export const patchOf = <S extends z.ZodRawShape>(fields: S) =>
  z
    .strictObject(fields)
    .partial()
    .refine((b) => Object.keys(b).length > 0, 'give at least one field to change');
