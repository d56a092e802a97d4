import { z } from 'zod';

const plain = /^[0-9A-Fa-f]{12}$/;
const colons = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const dashes = /^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$/;

/** `0C11050B9814`, `0c:11:05:0b:98:14` or `0C-11-05-0B-98-14` → `0C11050B9814`; anything else → null. */
export function normalizeMac(input: string): string | null {
  const value = input.trim();
  if (plain.test(value) || colons.test(value) || dashes.test(value)) return value.replace(/[:-]/g, '').toUpperCase();
  return null;
}

/** The canonical form devices use on the wire: exactly 12 uppercase hex digits. */
export const isCanonicalMac = (value: string) => /^[0-9A-F]{12}$/.test(value);

export const macInput = z
  .string()
  .max(64)
  .transform((value, ctx) => {
    const mac = normalizeMac(value);
    if (!mac) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a MAC address (expected 12 hex digits, optionally separated by ':' or '-')`, input: value });
      return z.NEVER;
    }
    return mac;
  })
  .describe('MAC address: 0C11050B9814, 0c:11:05:0b:98:14 or 0C-11-05-0B-98-14');
