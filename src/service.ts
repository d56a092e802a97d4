import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { AccountService } from './accounts/service.js';
import { buildApi } from './api/app.js';
import type { Config } from './config.js';
import { openDatabase, runMigrations, type Database } from './db/client.js';
import { DeviceGateway, type ListeningPorts } from './device-gateway/gateway.js';
import { PresenceStore } from './devices/presence.js';
import { DeviceService } from './devices/service.js';
import { connectRedis, type RedisHandle } from './infra/redis.js';
import { resolveFactorySecret } from './infra/secrets.js';
import type { Logger } from './logger.js';
import { MacLibraryService } from './mac-library/service.js';
import { DomainEvents } from './shared/events.js';
import { ProvisioningEngine } from './provisioning/engine.js';
import { ProvisioningService } from './provisioning/service.js';
import { verifyDeviceKey } from './devices/device-key.js';
import { FirmwareCatalogue } from './firmware/catalogue.js';
import { UpgradeScheduler } from './firmware/scheduler.js';
import { FirmwareStorage } from './firmware/storage.js';
import { UpgradeService } from './firmware/upgrades.js';

export interface RunningService {
  ports: { http: number } & ListeningPorts;
  database: Database;
  redis: RedisHandle;
  gateway: DeviceGateway;
  engine: ProvisioningEngine;
  upgrades: UpgradeService;
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

/** Starts the whole service: database (migrated), Redis, device gateway, REST API. */
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
    logger.info({ database: database.kind }, 'database ready');
    const redis = await connectRedis({ url: config.redis.url, explicit: config.redis.explicit, pathEnv: env.PATH, logger });
    cleanups.push(['redis', () => redis.close()]);

    const factorySecret = resolveFactorySecret(config.deviceFactorySecret, config.dataDir, logger);
    const events = new DomainEvents();
    const accounts = new AccountService(database.db);
    const macLibrary = new MacLibraryService(database.db, accounts, events);
    const devices = new DeviceService(database.db, events);

    const bootstrap = await accounts.bootstrapDistributor(config.adminToken);
    if (bootstrap.generatedToken) {
      logger.warn(`First start: created the distributor account. Its API token (shown only now): ${bootstrap.generatedToken}`);
    }

    const gateway = new DeviceGateway({
      mqtt: config.mqtt,
      presenceFlushMs: config.presenceFlushMs,
      factorySecret,
      loadMacLibrary: () => macLibrary.allMacs(),
      presenceStore: new PresenceStore(database.db),
      events,
      logger,
    });
    // Devices learn the download address from the upgrade command; the HTTP port is known after listen.
    let publicUrl = config.publicUrl ?? '';
    const engine = new ProvisioningEngine({
      db: database.db,
      redis: redis.client,
      devices,
      channel: gateway,
      logger,
      ...config.jobs,
      firmwareUrl: (id) => `${publicUrl}/firmware/${id}/image`,
    });
    const provisioning = new ProvisioningService(database.db, devices, engine);
    const storage = new FirmwareStorage(config.dataDir);
    await storage.init();
    const catalogue = new FirmwareCatalogue(database.db, storage, config.firmware.maxImageBytes);
    const upgrades = new UpgradeService(database.db, devices, provisioning);
    const scheduler = new UpgradeScheduler({ redis: redis.client, queueName: `${config.jobs.queueName}-upgrades`, logger, fire: async (id) => void (await upgrades.start(id)) });
    upgrades.useScheduler(scheduler);
    gateway.setSink({
      deviceConnected: (mac) => engine.deviceConnected(mac),
      deviceHello: (mac, hello) => engine.deviceHello(mac, hello),
      commandStatus: (mac, jobId, payload) => engine.deviceStatus(mac, jobId, payload),
    });
    await gateway.start();
    cleanups.push(['device gateway', () => gateway.stop()]);
    await engine.start();
    cleanups.push(['provisioning engine', () => engine.stop()]);
    await scheduler.start(await upgrades.pending());
    cleanups.push(['upgrade scheduler', () => scheduler.stop()]);

    const app = await buildApi({
      logger,
      accounts,
      macLibrary,
      devices,
      provisioning,
      deviceConfig: { verifyDevice: (mac, key) => verifyDeviceKey(factorySecret, mac, key), effectiveConfig: (mac) => engine.effectiveConfig(mac) },
      firmware: { catalogue, upgrades, maxImageBytes: config.firmware.maxImageBytes, maxDownloads: config.firmware.maxDownloads },
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
      database,
      redis,
      gateway,
      engine,
      upgrades,
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
