import { resolve } from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { startService, type RunningService } from './service.js';

let config: Config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
const logger = createLogger(config.logLevel);

/** The block a person starting the service reads: where it listens, the first token, how to try it. */
function readyBlock(service: RunningService, c: Config): string {
  const host = ['0.0.0.0', '::', ''].includes(c.mqtt.host) ? '127.0.0.1' : c.mqtt.host;
  const api = service.publicUrl;
  const token = service.generatedAdminToken
    ? `${service.generatedAdminToken}   (the distributor's token, shown only now: keep it)`
    : c.adminToken
      ? '(ADMIN_TOKEN)'
      : '(printed on the first start; issue more with POST /api/v1/installers/{id}/tokens)';
  const secretArg = c.deviceFactorySecret ? '--secret "$DEVICE_FACTORY_SECRET"' : `--data-dir ${resolve(c.dataDir)}`;
  return [
    '',
    'Intercom device cloud is ready',
    `  API           ${api}/api/v1        OpenAPI: ${api}/docs`,
    `  health        ${api}/healthz   ${api}/readyz`,
    `  MQTT          mqtt://${host}:${service.ports.mqtt}${service.ports.mqtts ? `   mqtts://${host}:${service.ports.mqtts}` : ''}   ws://${host}:${service.ports.http}/mqtt`,
    `  token         ${token}`,
    '  simulator     (after adding the MACs 0C1105000000 and 0C1105000001 to a MAC library)',
    `                npm run simulate -- --devices 2 --mac-prefix 0C1105 --url mqtt://${host}:${service.ports.mqtt} ${secretArg} --quiet`,
    '',
  ].join('\n');
}

try {
  const service = await startService(config, logger, { PATH: process.env.PATH });
  process.stdout.write(`${readyBlock(service, config)}\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: no new connections, closing device sessions, finishing requests');
    const force = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownGraceMs);
    force.unref();
    await service.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  logger.fatal({ err: err instanceof Error ? err.message : err }, 'could not start');
  process.exit(1);
}
