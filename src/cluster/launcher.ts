import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AccountService } from '../accounts/service.js';
import { ConfigError, loadConfig, type Config, type Role } from '../config.js';
import { openDatabase } from '../db/client.js';
import { backoffDelay } from '../infra/backoff.js';
import { freePort, reachableHost } from '../infra/net.js';
import { connectRedis } from '../infra/redis.js';
import { resolveFactorySecret } from '../infra/secrets.js';
import { createLogger } from '../logger.js';
import { readyBlock } from '../ready-block.js';
import { prepareDatabase } from '../service.js';

// npm run cluster -- [--gateways N] [--engines M] [--apis K] [--exit-with-parent]   (0 runs none of that role)
//
// Runs a deployment's processes on one machine with Node's cluster module: gateway processes share the
// MQTT, MQTTS and WebSocket ports, API processes share the HTTP port, and the primary hands each new
// connection to the next process in turn (round-robin), so sessions spread evenly whatever the kernel
// would do. The primary migrates and bootstraps first, restarts a process that dies, and stops them all on
// SIGTERM or SIGINT, or with --exit-with-parent when its standard input closes: the process that started it
// holds the other end of that pipe, so its end (kill -9 included) stops the cluster. Workers end with the
// primary by themselves (Node's cluster: a worker whose primary is gone exits).

const { values: args } = parseArgs({
  options: {
    gateways: { type: 'string', default: String(availableParallelism()) },
    engines: { type: 'string', default: '1' },
    apis: { type: 'string', default: '1' },
    'exit-with-parent': { type: 'boolean', default: false },
  },
});
const counts = (['gateway', 'engine', 'api'] as const).map((role) => [role, Number(args[`${role}s`])] as const);
// A machine of a larger deployment may run some roles only (say, gateways behind a load balancer).
for (const [role, n] of counts) {
  if (!Number.isInteger(n) || n < 0 || n > 64) {
    console.error(`--${role}s must be a whole number from 0 to 64`);
    process.exit(2);
  }
}
if (counts.every(([, n]) => n === 0)) {
  console.error('nothing to run: give at least one of --gateways, --engines, --apis');
  process.exit(2);
}

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
if (!config.databaseUrl) {
  console.error('The cluster needs PostgreSQL: set DATABASE_URL (the embedded database belongs to one process; `npm start` runs everything in one).');
  process.exit(2);
}
const logger = createLogger(config.logLevel).child({ component: 'launcher' });

// Until the workers run there is nothing to stop: a parent gone that early just ends the launcher.
let stopCluster: (why: string) => void = (why) => {
  logger.info({ why }, 'stopping before the cluster started');
  process.exit(0);
};
if (args['exit-with-parent']) {
  process.stdin.on('end', () => stopCluster('standard input closed: the parent ended'));
  process.stdin.on('error', () => stopCluster('standard input failed: the parent ended'));
  process.stdin.resume();
}

/** A port every process of a role shares: the configured one, or a free one when 0 (or 1883 taken by default). */
async function sharedPort(port: number, explicit: boolean): Promise<number> {
  if (port !== 0 && (explicit || (await portFree(port)))) return port;
  return freePort();
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, () => server.close(() => resolve(true)));
  });
}

/**
 * Restart delays after a process dies: doubling from 1 s to 30 s with jitter, back to the first once one
 * ran a minute. A process that cannot reach the database at start waits for it itself (main.ts): these
 * delays are for processes that crash.
 */
const RESTART = { minMs: 1000, maxMs: 30_000 };

interface Slot {
  role: Role;
  worker: Worker | null;
  startedAt: number;
  /** Deaths in a row of processes that did not run a minute. */
  crashes: number;
  ready: boolean;
}

async function main() {
  // Migrations and the first distributor, once, before any worker starts (workers take the same lock).
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 2 });
  const { bootstrap } = await prepareDatabase(database, new AccountService(database.db), config).finally(() => database.close());
  // Redis: the configured one, the local one, or a redis-server this launcher starts for all its processes.
  const redis = await connectRedis({ url: config.redis.url, explicit: config.redis.explicit, pathEnv: process.env.PATH, logger });
  await redis.client.quit().catch(() => {});

  const runs = (role: Role) => counts.some(([r, n]) => r === role && n > 0);
  const gateways = runs('gateway');
  // Ports of roles this machine does not run are null (nothing listens there).
  const ports = {
    http: runs('api') ? await sharedPort(config.http.port, true) : null,
    mqtt: gateways ? await sharedPort(config.mqtt.port, config.mqtt.portExplicit) : null,
    ws: gateways ? await sharedPort(config.mqtt.wsPort, true) : null,
    mqtts: gateways && config.mqtt.tls ? await sharedPort(config.mqtt.tls.port, true) : null,
  };
  // Engine processes put the API's address into commands (documents, firmware): without PUBLIC_URL they
  // learn it here, from the API port this machine shares out.
  const httpHost = reachableHost(config.http.host);
  const publicUrlForWorkers = config.publicUrl ?? (ports.http ? `http://${httpHost}:${ports.http}` : undefined);
  const workerEnv = {
    ...(publicUrlForWorkers ? { PUBLIC_URL: publicUrlForWorkers } : {}),
    // Resolved once here: processes generating one each at first start would disagree on device keys.
    DEVICE_FACTORY_SECRET: resolveFactorySecret(config.deviceFactorySecret, config.dataDir, logger),
    REDIS_URL: redis.url,
    ...(ports.http ? { HTTP_PORT: String(ports.http) } : {}),
    ...(ports.mqtt ? { MQTT_PORT: String(ports.mqtt) } : {}),
    ...(ports.ws ? { MQTT_WS_PORT: String(ports.ws) } : {}),
    ...(ports.mqtts ? { MQTTS_PORT: String(ports.mqtts) } : {}),
  };

  cluster.schedulingPolicy = cluster.SCHED_RR;
  const here = fileURLToPath(import.meta.url);
  cluster.setupPrimary({ exec: here.replace(/cluster[\\/]launcher\.(ts|js)$/, 'main.$1'), args: [] });

  const slots: Slot[] = counts.flatMap(([role, n]) => Array.from({ length: n }, () => ({ role, worker: null, startedAt: 0, crashes: 0, ready: false })));
  let stopping = false;
  let announced = false;
  let publicUrl = '';

  const fork = (slot: Slot) => {
    slot.ready = false;
    slot.startedAt = Date.now();
    const worker = cluster.fork({ ...workerEnv, ROLE: slot.role });
    slot.worker = worker;
    worker.on('message', (m: { type?: string; publicUrl?: string; reason?: string; retryInMs?: number }) => {
      if (m?.type === 'waiting') {
        console.log(JSON.stringify({ event: 'worker-waiting', role: slot.role, pid: worker.process.pid, reason: m.reason, retryInMs: m.retryInMs }));
        return;
      }
      if (m?.type !== 'ready') return;
      slot.ready = true;
      if (slot.role === 'api' && m.publicUrl) publicUrl = m.publicUrl;
      if (announced) {
        console.log(JSON.stringify({ event: 'worker-restarted', role: slot.role, pid: worker.process.pid }));
        return;
      }
      if (slots.every((s) => s.ready)) {
        announced = true;
        process.stdout.write(`${readyBlock({ publicUrl, generatedAdminToken: bootstrap.generatedToken, ports: { ...ports } }, config)}\n`);
        console.log(JSON.stringify({ event: 'cluster-ready', http: ports.http, mqtt: ports.mqtt, ws: ports.ws, mqtts: ports.mqtts, workers: slots.map((s) => ({ role: s.role, pid: s.worker?.process.pid })) }));
      }
    });
    worker.on('exit', (code, signal) => {
      if (slot.worker !== worker) return;
      slot.worker = null;
      slot.ready = false;
      if (stopping) return;
      // A process that ran a while gets restarted soon; one that keeps dying, slower and slower.
      slot.crashes = Date.now() - slot.startedAt > 60_000 ? 0 : slot.crashes + 1;
      const delay = backoffDelay(slot.crashes, RESTART);
      logger.error({ role: slot.role, pid: worker.process.pid, code, signal, restartInMs: delay }, 'a process of the cluster ended; restarting it');
      console.log(JSON.stringify({ event: 'worker-exited', role: slot.role, pid: worker.process.pid, code, signal, restartInMs: delay }));
      setTimeout(() => !stopping && fork(slot), delay);
    });
  };
  for (const slot of slots) fork(slot);

  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ why }, 'stopping the cluster');
    const running = slots.map((s) => s.worker).filter((w): w is Worker => !!w && !w.isDead());
    const force = setTimeout(() => running.forEach((w) => w.process.kill('SIGKILL')), config.shutdownGraceMs + 5000);
    force.unref();
    await Promise.all(running.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : (w.once('exit', () => resolve()), w.process.kill('SIGTERM'))))));
    await redis.close();
    logger.info('cluster stopped');
    process.exit(0);
  };
  stopCluster = (why) => void stop(why);
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  logger.fatal({ err: err instanceof Error ? err.message : err }, 'the cluster could not start');
  process.exit(1);
});
