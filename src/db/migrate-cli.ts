import { loadConfig } from '../config.js';
import { openDatabase, runMigrations } from './client.js';

// `npm run migrate`: applies the SQL migrations to DATABASE_URL (or the embedded database under DATA_DIR).
const config = loadConfig(process.env);
const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 1 });
try {
  await runMigrations(database);
  console.log(`migrations applied (${database.kind})`);
} finally {
  await database.close();
}
