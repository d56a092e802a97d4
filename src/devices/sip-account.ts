import { randomInt } from 'node:crypto';
import { sql } from 'drizzle-orm';

// SIP accounts: every device and every app station has one, numbered from one sequence (one numbering
// plan for all of them) with a random password. Other domains allocate theirs through this module.

const SIP_PASSWORD_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** A new SIP password: 16 characters of an alphabet without look-alikes (about 93 bits). */
export const newSipPassword = () => Array.from({ length: 16 }, () => SIP_PASSWORD_ALPHABET[randomInt(SIP_PASSWORD_ALPHABET.length)]).join('');

/** The next SIP number, as an SQL expression for an insert. */
export const nextSipNumber = () => sql<string>`nextval('sip_number_seq')::text`;

