import { z } from 'zod';

const plain = /^[0-9A-Fa-f]{12}$/;
const colons = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;
const dashes = /^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$/;

export const NOT_A_MAC = 'not a MAC address (expected 12 hex digits, optionally separated by ":" or "-")';

/**
 * `0C11050B9814`, `0c:11:05:0b:98:14` or `0C-11-05-0B-98-14` → `0C11050B9814`. No device has the all-zero
 * MAC, the broadcast MAC or a multicast (group) MAC as its own address, so those are refused with the reason.
 */
export function parseMac(input: string): { mac: string } | { reason: string } {
  const mac = wellFormed(input);
  if (!mac) return { reason: NOT_A_MAC };
  if (mac === '000000000000') return { reason: 'the all-zero MAC is no device address' };
  if (mac === 'FFFFFFFFFFFF') return { reason: 'the broadcast MAC is no device address' };
  if (parseInt(mac.slice(0, 2), 16) & 1) return { reason: 'a multicast MAC (odd first octet) is no device address' };
  return { mac };
}

/** The canonical form of a MAC written in one of the three forms, whatever its value; else null. */
function wellFormed(input: string): string | null {
  const value = input.trim();
  return plain.test(value) || colons.test(value) || dashes.test(value) ? value.replace(/[:-]/g, '').toUpperCase() : null;
}

/** The canonical MAC, or null for anything that is not a device's MAC. */
export function normalizeMac(input: string): string | null {
  const parsed = parseMac(input);
  return 'mac' in parsed ? parsed.mac : null;
}

/** The canonical form devices use on the wire: exactly 12 uppercase hex digits. */
export const isCanonicalMac = (value: string) => /^[0-9A-F]{12}$/.test(value);

/** A MAC in any of its written forms, normalised: for naming a device or entry that may already exist. */
export const macInput = z
  .string()
  .max(64)
  .transform((value, ctx) => {
    const mac = wellFormed(value);
    if (!mac) {
      ctx.addIssue({ code: 'custom', message: `"${value}": ${NOT_A_MAC}`, input: value });
      return z.NEVER;
    }
    return mac;
  })
  .describe('MAC address: 0C11050B9814, 0c:11:05:0b:98:14 or 0C-11-05-0B-98-14');

/** A MAC being registered: well-formed and a possible device address (not all-zero, broadcast or multicast). */
export const newMacInput = z
  .string()
  .max(64)
  .transform((value, ctx) => {
    const parsed = parseMac(value);
    if ('reason' in parsed) {
      ctx.addIssue({ code: 'custom', message: `"${value}": ${parsed.reason}`, input: value });
      return z.NEVER;
    }
    return parsed.mac;
  })
  .describe('MAC address: 0C11050B9814, 0c:11:05:0b:98:14 or 0C-11-05-0B-98-14 (not all-zero, broadcast or multicast)');
