import { defineConfig } from 'drizzle-kit';

// Migrations are generated from the domain tables and never edited after they land.
export default defineConfig({
  dialect: 'postgresql',
  schema: ['./src/accounts/tables.ts', './src/mac-library/tables.ts', './src/devices/tables.ts', './src/provisioning/tables.ts', './src/firmware/tables.ts', './src/documents/tables.ts', './src/directory/tables.ts', './src/audit/tables.ts', './src/calls/tables.ts', './src/ixg/tables.ts', './src/events/tables.ts', './src/webhooks/tables.ts', './src/db/tables.ts'],
  out: './migrations',
});
