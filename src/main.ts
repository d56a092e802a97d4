import cluster from 'node:cluster';
import { ConfigError, loadConfig, type Config } from './config.js';
import { backoffDelay, isTransient } from './infra/backoff.js';
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
// A last resort: a background task that failed without a handler is a bug to log, not a reason to drop
// every device session and request of this process (ARCHITECTURE.md, Faults).
process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection; the process goes on'));

/**
 * Under the launcher, a process that cannot reach PostgreSQL or Redis waits for them in place (backoff with
 * jitter, 0.5 s doubling to 5 s) and starts once they answer: a crash loop would come back only at the
 * launcher's next, ever longer, restart delay. Alone, it fails at once (its supervisor decides).
 */
async function start() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startProcess(config, logger, { PATH: process.env.PATH });
    } catch (err) {
      if (!cluster.isWorker || !isTransient(err)) throw err;
      const delayMs = backoffDelay(attempt, { minMs: 500, maxMs: 5000 });
      logger.warn({ err: (err as Error).message, retryInMs: delayMs }, 'the database or Redis does not answer; starting when it does');
      process.send!({ type: 'waiting', reason: (err as Error).message.slice(0, 200), retryInMs: delayMs });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

try {
  const service = await start();
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
