import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { AccountService } from './accounts/service.js';
import { WriteAuditLog } from './audit/service.js';
import { buildApi } from './api/app.js';
import type { Config } from './config.js';
import { deploymentId, openDatabase, runMigrations, type Database } from './db/client.js';
import { DeviceGateway, type ListeningPorts } from './device-gateway/gateway.js';
import { DeviceKeys } from './devices/device-key.js';
import { PresenceStore } from './devices/presence.js';
import { DeviceService } from './devices/service.js';
import { DirectoryFollower, DirectoryRenders } from './directory/follower.js';
import { DirectoryService } from './directory/service.js';
import { DocumentStore } from './documents/service.js';
import { FirmwareCatalogue } from './firmware/catalogue.js';
import { UpgradeScheduler } from './firmware/scheduler.js';
import { FirmwareStorage } from './firmware/storage.js';
import { upgradeKind } from './firmware/upgrade-kind.js';
import { UpgradeService } from './firmware/upgrades.js';
import { connectRedis, type RedisHandle } from './infra/redis.js';
import { resolveFactorySecret } from './infra/secrets.js';
import type { Logger } from './logger.js';
import { MacLibraryService } from './mac-library/service.js';
import { Configurations } from './provisioning/configuration.js';
import { ProvisioningEngine } from './provisioning/engine.js';
import { IdempotentRequests } from './provisioning/idempotency.js';
import { JobStore } from './provisioning/job-store.js';
import { provisioningKinds } from './provisioning/job-kinds.js';
import { JobKinds } from './provisioning/kinds.js';
import { ProvisioningService } from './provisioning/service.js';
import { DomainEvents } from './shared/events.js';

export interface RunningService {
  ports: { http: number } & ListeningPorts;
  /** The address devices and installers reach the HTTP port at. */
  publicUrl: string;
  database: Database;
  redis: RedisHandle;
  /** Where this deployment's queues live in Redis (`{QUEUE_PREFIX}:{deployment id}`). */
  queuePrefix: string;
  gateway: DeviceGateway;
  engine: ProvisioningEngine;
  scheduler: UpgradeScheduler;
  upgrades: UpgradeService;
  follower: DirectoryFollower;
  app: FastifyInstance;
  factorySecret: string;
  /** The first distributor's token when it was generated on this start (null otherwise). */
  generatedAdminToken: string | null;
  close(): Promise<void>;
}

const packageVersion = (): string => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  }
};

/** How often expired idempotency keys and documents no device may fetch any more are removed. */
const HOUSEKEEPING_MS = 3600_000;

/** Starts the whole service: database (migrated), Redis, device gateway, provisioning engine, REST API. */
export async function startService(config: Config, logger: Logger, env: { PATH?: string } = {}): Promise<RunningService> {
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    onIdleError: (err) => logger.warn({ err: err.message }, 'idle database connection lost; the pool reconnects'),
  });
  const cleanups: [string, () => Promise<void>][] = [['database', () => database.close()]];
  const cleanup = async () => {
    for (const [name, step] of cleanups.reverse()) {
      const started = Date.now();
      await step().catch((err: unknown) => logger.error({ err, step: name }, 'shutdown step failed'));
      logger.debug({ step: name, ms: Date.now() - started }, 'shutdown step done');
    }
  };
  try {
    await runMigrations(database);
    // Redis keys belong to this deployment: two deployments on one Redis never take each other's jobs.
    const queuePrefix = `${config.queues.prefix}:${await deploymentId(database)}`;
    logger.info({ database: database.kind, queuePrefix }, 'database ready');
    const redis = await connectRedis({ url: config.redis.url, explicit: config.redis.explicit, pathEnv: env.PATH, logger });
    cleanups.push(['redis', () => redis.close()]);

    const factorySecret = resolveFactorySecret(config.deviceFactorySecret, config.dataDir, logger);
    const keys = new DeviceKeys(factorySecret);
    const events = new DomainEvents();
    const accounts = new AccountService(database.db);
    const directory = new DirectoryService(database.db);
    const devices = new DeviceService(database.db, events, directory);
    const macLibrary = new MacLibraryService(database.db, accounts, events);
    const bootstrap = await accounts.bootstrapDistributor(config.adminToken);

    const presence = new PresenceStore(database.db);
    const gateway = new DeviceGateway({
      mqtt: config.mqtt,
      presenceFlushMs: config.presenceFlushMs,
      keys,
      loadMacLibrary: () => macLibrary.allMacs(),
      presence: {
        write: async (updates) => {
          await presence.apply(updates);
          await macLibrary.recordSeen(updates);
        },
        markAllOffline: () => presence.markAllOffline(),
      },
      events,
      logger,
      shared: { redis: redis.client, prefix: queuePrefix },
    });

    // Devices learn the HTTP address from commands (downloads, documents); the port is known after listen.
    let publicUrl = config.publicUrl ?? '';
    const documents = new DocumentStore(database);
    const directoryRenders = new DirectoryRenders(database);
    const configurations = new Configurations(database, devices, documents, directoryRenders, (sha256) => `${publicUrl}/documents/${sha256}`);
    const store = new JobStore(database);
    const kinds = new JobKinds();
    for (const kind of provisioningKinds(configurations, store)) kinds.register(kind);
    kinds.register(upgradeKind((firmwareId) => `${publicUrl}/firmware/${firmwareId}/image`));
    const engine = new ProvisioningEngine({
      store,
      redis: redis.client,
      devices,
      kinds,
      channel: gateway,
      logger,
      queuePrefix,
      policy: { ackTimeoutMs: config.jobs.ackTimeoutMs, maxAckBackoffMs: 5 * 60_000, inProgressTimeoutMs: config.jobs.inProgressTimeoutMs, maxAttempts: config.jobs.maxAttempts },
      concurrency: config.jobs.concurrency,
      queueTimeoutMs: config.queues.timeoutMs,
      reconcileIntervalMs: config.queues.reconcileIntervalMs,
    });
    const idempotency = new IdempotentRequests(database.db);
    const provisioning = new ProvisioningService(database.db, devices, engine, idempotency);
    const storage = new FirmwareStorage(config.dataDir);
    await storage.init();
    const catalogue = new FirmwareCatalogue(database.db, storage, config.firmware.maxImageBytes);
    const upgrades = new UpgradeService(database.db, devices, provisioning);
    const scheduler = new UpgradeScheduler({
      redis: redis.client,
      queuePrefix,
      logger,
      fire: async (id) => void (await upgrades.start(id)),
      pending: () => upgrades.pending(),
      queueTimeoutMs: config.queues.timeoutMs,
      reconcileIntervalMs: config.queues.reconcileIntervalMs,
    });
    upgrades.useScheduler(scheduler);
    const follower = new DirectoryFollower(database.db, documents, async (macs) => void (await provisioning.followDirectory(macs)), logger);
    directory.onChange(follower.poke);
    gateway.setSink(engine);
    // A deleted device's unfinished jobs end, and its documents go: nothing of it reaches the MAC's next owner.
    events.on('device.removed', ({ mac }) => {
      Promise.all([engine.deviceRemoved(mac), documents.forgetDevice(mac)]).catch((err: unknown) =>
        logger.warn({ mac, err: (err as Error).message }, 'cleaning up after a deleted device failed; its jobs fail when next due'),
      );
    });
    // Each part's stop is registered before its start: stopping is safe after a start that failed halfway.
    cleanups.push(['device gateway', () => gateway.stop()]);
    await gateway.start();
    cleanups.push(['provisioning engine', () => engine.stop()]);
    await engine.start();
    cleanups.push(['upgrade scheduler', () => scheduler.stop()]);
    await scheduler.start();
    cleanups.push(['directory follower', () => follower.stop()]);
    follower.start(config.queues.reconcileIntervalMs);
    const housekeeping = setInterval(() => {
      Promise.all([idempotency.sweep(), documents.sweep()]).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'housekeeping failed'));
    }, HOUSEKEEPING_MS);
    housekeeping.unref();
    cleanups.push(['housekeeping', async () => clearInterval(housekeeping)]);

    const app = await buildApi({
      logger,
      accounts,
      macLibrary,
      devices,
      directory,
      writes: new WriteAuditLog(database.db),
      deviceDirectory: { renders: directoryRenders, documents },
      provisioning,
      deviceAccess: { keys, effectiveConfig: (mac) => configurations.effective(mac), documents },
      firmware: { catalogue, upgrades, maxImageBytes: config.firmware.maxImageBytes, maxDownloads: config.firmware.maxDownloads },
      shared: { redis: redis.client, prefix: queuePrefix },
      version: packageVersion(),
      readiness: { database: () => database.ping(), redis: async () => void (await redis.client.ping()), broker: () => gateway.isReady() },
    });
    app.server.maxConnections = config.http.maxConnections;
    app.server.on('upgrade', (req, socket, head) => {
      if ((req.url ?? '').split('?')[0] === '/mqtt') gateway.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
    await app.listen({ host: config.http.host, port: config.http.port });
    cleanups.push([
      'http and device sessions',
      async () => {
        // Connections busy when close() began turn idle later; close them as they do instead of
        // waiting out the keep-alive timeout.
        const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
        try {
          await Promise.all([app.close(), gateway.stop()]);
        } finally {
          clearInterval(sweep);
        }
      },
    ]);
    const httpPort = (app.server.address() as { port: number }).port;
    if (!publicUrl) publicUrl = `http://${['0.0.0.0', '::', ''].includes(config.http.host) ? '127.0.0.1' : config.http.host}:${httpPort}`;
    const mqttPorts = await gateway.listen();
    logger.info({ http: httpPort, mqtt: mqttPorts.mqtt, mqtts: mqttPorts.mqtts, websocket: `ws://${config.http.host}:${httpPort}/mqtt` }, 'intercom device cloud listening');

    let closing: Promise<void> | null = null;
    return {
      ports: { http: httpPort, ...mqttPorts },
      publicUrl,
      database,
      redis,
      queuePrefix,
      gateway,
      engine,
      scheduler,
      upgrades,
      follower,
      app,
      factorySecret,
      generatedAdminToken: bootstrap.generatedToken,
      close: () => (closing ??= cleanup()),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
