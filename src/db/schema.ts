// All tables, for drizzle's relational typing; each domain owns its own table file.
export * from '../accounts/tables.js';
export * from '../mac-library/tables.js';
export * from '../devices/tables.js';
export * from '../provisioning/tables.js';
export * from '../firmware/tables.js';
export * from '../documents/tables.js';
export * from '../directory/tables.js';
export * from '../audit/tables.js';
export * from '../calls/tables.js';
export * from '../ixg/tables.js';
export * from './tables.js';
export * from '../events/tables.js';
export * from '../webhooks/tables.js';
