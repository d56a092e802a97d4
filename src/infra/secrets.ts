import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../logger.js';

/**
 * The factory secret from which every device key derives. When DEVICE_FACTORY_SECRET is unset one is
 * generated once and kept in DATA_DIR, so device keys stay valid across restarts.
 */
export function resolveFactorySecret(configured: string | undefined, dataDir: string, logger: Logger): string {
  if (configured) return configured;
  const file = join(dataDir, 'device-factory-secret');
  try {
    const kept = readFileSync(file, 'utf8').trim();
    if (kept.length >= 16) return kept;
  } catch {
    /* first start */
  }
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
  logger.warn({ file }, 'DEVICE_FACTORY_SECRET is unset: generated one and kept it in DATA_DIR. Set it explicitly in production.');
  return secret;
}
