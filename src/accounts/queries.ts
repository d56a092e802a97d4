import type { Db } from '../db/client.js';
import { accounts } from './tables.js';

// What other domains may ask of the accounts table, as query functions: they never name it themselves.

/** Each account's name, as a subquery another domain's list can join on `id`. */
export const accountNames = (db: Db) => db.select({ id: accounts.id, name: accounts.name }).from(accounts).as('account_names');
