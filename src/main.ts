import cluster from 'node:cluster';
import { ConfigError, loadConfig, type Config } from './config.js';
import { createLogger } from './logger.js';
import { readyBlock } from './ready-block.js';
import { startProcess } from './service.js';

// `--role gateway` is the same as ROLE=gateway.
const roleArg = process.argv.indexOf('--role');
const env = roleArg > 0 ? { ...process.env, ROLE: process.argv[roleArg + 1] } : process.env;

let config: Config;
try {
  config = loadConfig(env);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
const logger = createLogger(config.logLevel);

try {
  const service = await startProcess(config, logger, { PATH: process.env.PATH });
  // Alone, the process tells the person who started it; under the launcher, the launcher does.
  if (cluster.isWorker) process.send!({ type: 'ready', role: service.role, instance: service.instance, ports: service.ports, publicUrl: service.publicUrl });
  else if (config.role === 'all') process.stdout.write(`${readyBlock(service, config)}\n`);
  else logger.info({ role: config.role, ports: service.ports }, 'ready');
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
