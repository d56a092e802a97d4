import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import { AccountService } from './accounts/service.js';
import { appSipAccess, findKamailio, sipPorts, superviseKamailio, type KamailioSettings, type SipEndpoint } from './calls/kamailio.js';
import { CallService } from './calls/service.js';
import { WriteAuditLog } from './audit/service.js';
import { buildApi } from './api/app.js';
import { buildSipBackend } from './api/sip-backend-server.js';
import { AppStations } from './calls/app-stations.js';
import { ClusterBus } from './cluster/bus.js';
import { RedisLease } from './cluster/lease.js';
import { ClusterCommandChannel, GatewayInbox, GatewayLease, liveGateways, RedisSessionRegistry } from './cluster/routing.js';
import { RedisWakeGenerations } from './cluster/wakes.js';
import type { Config, Role } from './config.js';
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
import { limitHttpServer, refusalLog, type HttpLimits } from './infra/connection-caps.js';
import { canConnect, reachableHost } from './infra/net.js';
import { connectRedis, type RedisHandle } from './infra/redis.js';
import { resolveFactorySecret } from './infra/secrets.js';
import type { Logger } from './logger.js';
import { MacLibraryService } from './mac-library/service.js';
import { Configurations } from './provisioning/configuration.js';
import { ClusterMetrics } from './metrics/cluster.js';
import { Metrics } from './metrics/registry.js';
import type { CommandChannel } from './provisioning/channel.js';
import { ProvisioningEngine } from './provisioning/engine.js';
import { IdempotentRequests } from './provisioning/idempotency.js';
import { JobStore } from './provisioning/job-store.js';
import { provisioningKinds } from './provisioning/job-kinds.js';
import { JobKinds } from './provisioning/kinds.js';
import { ProvisioningService } from './provisioning/service.js';
import { DomainEvents } from './shared/events.js';
import { SpreadsheetReader } from './shared/sheets.js';

export interface RunningService {
  /** `sipBackend`: Kamailio's back end (/internal/sip), on its own listener (null: none runs here). */
  ports: { http: number; sipBackend: number | null } & ListeningPorts;
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
  appStations: AppStations;
  app: FastifyInstance;
  calls: CallService;
  sip: SipEndpoint | null;
  sipServerPid(): number | null;
  factorySecret: string;
  /** The first distributor's token when it was generated on this start (null otherwise). */
  generatedAdminToken: string | null;
  close(): Promise<void>;
}

/** One process of a deployment, whatever its role: the parts its role runs are set, the others are null. */
export interface RunningProcess {
  role: Role;
  /** This process's name in the cluster (host, pid and a random part). */
  instance: string;
  ports: { http: number | null; mqtt: number | null; mqtts: number | null; ws: number | null; sipBackend: number | null };
  publicUrl: string;
  database: Database;
  redis: RedisHandle;
  queuePrefix: string;
  gateway: DeviceGateway | null;
  engine: ProvisioningEngine;
  scheduler: UpgradeScheduler | null;
  upgrades: UpgradeService;
  follower: DirectoryFollower | null;
  appStations: AppStations;
  app: FastifyInstance | null;
  calls: CallService;
  /** Where stations reach the SIP server (null: calls are off). */
  sip: SipEndpoint | null;
  /** The Kamailio child's main process id (null: none runs here). */
  sipServerPid(): number | null;
  factorySecret: string;
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
/** How often an engine process looks for gateway processes that died holding devices shown online. */
const DEAD_GATEWAY_SWEEP_MS = 5000;

/**
 * Migrates the database and makes the first distributor, under the start-up lock: processes starting
 * together do it one at a time. Answers the deployment's Redis prefix.
 */
export async function prepareDatabase(database: Database, accounts: AccountService, config: Config) {
  return database.exclusively(async () => {
    await runMigrations(database);
    // Redis keys belong to this deployment: two deployments on one Redis never take each other's jobs.
    return { queuePrefix: `${config.queues.prefix}:${await deploymentId(database)}`, bootstrap: await accounts.bootstrapDistributor(config.adminToken) };
  });
}

/** Starts the whole service in one process: database (migrated), Redis, device gateway, provisioning engine, REST API. */
export async function startService(config: Config, logger: Logger, env: { PATH?: string } = {}): Promise<RunningService> {
  const p = await startProcess({ ...config, role: 'all' }, logger, env);
  return { ...p, ports: { http: p.ports.http!, mqtt: p.ports.mqtt!, mqtts: p.ports.mqtts, sipBackend: p.ports.sipBackend }, gateway: p.gateway!, scheduler: p.scheduler!, follower: p.follower!, app: p.app! };
}

/**
 * Starts one process in its role. `all` runs everything; in a cluster (docs/deployment.md) `gateway` holds
 * device sessions and takes their answers, `engine` drives jobs, the upgrade schedule and the directory
 * follower, `api` serves HTTP. The processes share PostgreSQL and Redis: commands are routed to the
 * process holding the device's session, domain events travel over Redis, wake-ups are counted there.
 */
export async function startProcess(config: Config, logger: Logger, env: { PATH?: string } = {}): Promise<RunningProcess> {
  const role = config.role;
  const cluster = role !== 'all';
  const runs = { gateway: role === 'all' || role === 'gateway', engine: role === 'all' || role === 'engine', api: role === 'all' || role === 'api' };
  const instance = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  // An engine builds the URLs devices fetch documents and firmware from, and serves no HTTP itself.
  if (role === 'engine' && !config.publicUrl) throw new Error('role engine needs PUBLIC_URL: the address devices reach the API at (documents, firmware downloads)');
  if (cluster && !config.databaseUrl) throw new Error(`role ${role} needs DATABASE_URL: the processes of a cluster share one PostgreSQL (the embedded database belongs to one process)`);
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
    const factorySecret = resolveFactorySecret(config.deviceFactorySecret, config.dataDir, logger);
    const keys = new DeviceKeys(factorySecret);
    const events = new DomainEvents();
    const accounts = new AccountService(database.db);
    const { queuePrefix, bootstrap } = await prepareDatabase(database, accounts, config);
    logger.info({ database: database.kind, queuePrefix, role }, 'database ready');
    const redis = await connectRedis({ url: config.redis.url, explicit: config.redis.explicit, pathEnv: env.PATH, logger });
    cleanups.push(['redis', () => redis.close()]);

    const directory = new DirectoryService(database.db);
    const devices = new DeviceService(database.db, events, directory);
    const macLibrary = new MacLibraryService(database.db, accounts, events);
    const presence = new PresenceStore(database.db);

    // Calls: the SIP endpoint is known now for an external server, after Kamailio started for a child.
    let sip: SipEndpoint | null = config.sip.mode === 'external' ? externalSipEndpoint(config) : null;
    // Devices learn the HTTP address from commands (downloads, documents); the port is known after listen.
    let publicUrl = config.publicUrl ?? '';
    const appStations = new AppStations({ db: database.db, directory, registrationUrl: (code) => `${publicUrl}/api/v1/app-registrations/${code}`, sipEndpoint: () => sip && appSipAccess(sip) });
    // A reset or removed apartment takes its app stations and codes with it, in the directory's transaction.
    directory.apartments.useTenantAccess(appStations);
    const calls = new CallService(database.db, directory, appStations, () => sip?.domain ?? config.sip.domain ?? 'sip.invalid');
    const sipBackendToken = config.sip.mode === 'external' ? config.sip.backendToken! : config.sip.mode === 'child' ? (config.sip.backendToken ?? randomBytes(24).toString('base64url')) : null;

    // Each process counts for itself and publishes to Redis; /metrics merges the deployment's processes.
    const metrics = new Metrics({ role, instance, logger });
    const clusterMetrics = new ClusterMetrics({ metrics, redis: redis.client, queuePrefix, logger });
    cleanups.push(['metrics', () => clusterMetrics.stop()]);
    clusterMetrics.start();

    const bus = cluster ? new ClusterBus(redis.client, queuePrefix, instance, logger) : null;
    if (bus) {
      bus.forward(events);
      cleanups.push(['cluster events', () => bus.stop()]);
      await bus.start();
    }

    const gateway = runs.gateway
      ? new DeviceGateway({
          mqtt: config.mqtt,
          presenceFlushMs: config.presenceFlushMs,
          keys,
          loadMacLibrary: () => macLibrary.allMacs(),
          presence: {
            write: async (updates) => {
              await presence.apply(updates);
              await macLibrary.recordSeen(updates);
            },
            // Alone, a starting gateway knows no device is connected; in a cluster others hold sessions.
            markAllOffline: cluster ? undefined : () => presence.markAllOffline(),
          },
          registry: cluster ? new RedisSessionRegistry(redis.client, queuePrefix, instance) : undefined,
          // Failed-authentication limits hold across gateway processes.
          shared: { redis: redis.client, prefix: queuePrefix },
          // In a cluster, MAC library changes and deletions happen in API processes.
          events: bus ? bus.remote : events,
          logger,
          metrics,
          deviceEvents: (mac, event) => calls.recordDoorEvent(mac, event),
        })
      : null;

    const documents = new DocumentStore(database);
    const directoryRenders = new DirectoryRenders(database);
    const configurations = new Configurations(database, devices, documents, directoryRenders, (sha256) => `${publicUrl}/documents/${sha256}`, () => sip);
    const store = new JobStore(database);
    const kinds = new JobKinds();
    for (const kind of provisioningKinds(configurations, store)) kinds.register(kind);
    kinds.register(upgradeKind((firmwareId) => `${publicUrl}/firmware/${firmwareId}/image`));
    const channel: CommandChannel = cluster ? new ClusterCommandChannel(redis.client, queuePrefix) : gateway!;
    const engine = new ProvisioningEngine({
      store,
      redis: redis.client,
      devices,
      kinds,
      channel,
      logger,
      queuePrefix,
      policy: { ackTimeoutMs: config.jobs.ackTimeoutMs, maxAckBackoffMs: 5 * 60_000, inProgressTimeoutMs: config.jobs.inProgressTimeoutMs, maxAttempts: config.jobs.maxAttempts },
      concurrency: config.jobs.concurrency,
      queueTimeoutMs: config.queues.timeoutMs,
      reconcileIntervalMs: config.queues.reconcileIntervalMs,
      wakes: cluster ? new RedisWakeGenerations(redis.client, queuePrefix) : undefined,
      // Gateway and API processes make and wake jobs; engine processes drive them.
      worker: runs.engine,
      metrics,
      configurations,
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
    // One engine process renders a directory change: the one holding the follower's lease.
    const followerLease = cluster ? new RedisLease(redis.client, `${queuePrefix}:lease:directory-follower`, instance, 3 * config.queues.reconcileIntervalMs) : null;
    const follower = runs.engine
      ? new DirectoryFollower(database.db, documents, async (macs) => void (await provisioning.followDirectory(macs)), logger, followerLease ? () => followerLease.held() : undefined)
      : null;
    if (follower) {
      if (bus) bus.onDirectoryChanged(follower.poke);
      else directory.onChange(follower.poke);
    } else if (bus) directory.onChange(bus.directoryChanged);
    if (runs.api) {
      // A deleted device's unfinished jobs end, and its documents go: nothing of it reaches the MAC's next owner.
      events.on('device.removed', ({ mac }) => {
        Promise.all([engine.deviceRemoved(mac), documents.forgetDevice(mac)]).catch((err: unknown) =>
          logger.warn({ mac, err: (err as Error).message }, 'cleaning up after a deleted device failed; its jobs fail when next due'),
        );
      });
    }

    // Each part's stop is registered before its start: stopping is safe after a start that failed halfway.
    if (gateway) {
      gateway.setSink(engine);
      cleanups.push(['device gateway', () => gateway.stop()]);
      await gateway.start();
      if (bus) bus.onReconnect(() => void gateway.refreshMacLibrary().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'MAC library not reloaded')));
    }
    cleanups.push(['provisioning engine', () => engine.stop()]);
    await engine.start();
    if (runs.engine) {
      metrics.watchQueue('provisioning', () => engine.queueCounts());
      cleanups.push(['upgrade scheduler', () => scheduler.stop()]);
      await scheduler.start();
      cleanups.push(['directory follower', () => follower!.stop()]);
      follower!.start(config.queues.reconcileIntervalMs);
      const housekeeping = setInterval(() => {
        Promise.all([idempotency.sweep(), documents.sweep()]).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'housekeeping failed'));
      }, HOUSEKEEPING_MS);
      housekeeping.unref();
      cleanups.push(['housekeeping', async () => clearInterval(housekeeping)]);
    }
    if (cluster && runs.engine) {
      // A gateway process that died (kill -9, lost machine) cannot mark its devices offline: once its
      // lease lapses, one engine process does.
      const sweepLease = new RedisLease(redis.client, `${queuePrefix}:lease:dead-gateway-sweep`, instance, 3 * DEAD_GATEWAY_SWEEP_MS);
      const sweep = setInterval(() => {
        void (async () => {
          if (!(await sweepLease.held())) return;
          const live = new Set(await liveGateways(redis.client, queuePrefix));
          for (const g of await presence.gatewaysHoldingDevices()) {
            if (live.has(g)) continue;
            const n = await presence.markGatewayOffline(g);
            if (n) logger.warn({ gateway: g, devices: n }, 'a gateway process stopped renewing its lease; its devices are offline until they reconnect');
          }
        })().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'dead gateway sweep failed'));
      }, DEAD_GATEWAY_SWEEP_MS);
      sweep.unref();
      cleanups.push(['dead gateway sweep', async () => clearInterval(sweep)]);
    }
    // Periodic reload: the MAC library cache never drifts for long even if an event was lost.
    if (gateway && cluster) {
      const reload = setInterval(() => void gateway.refreshMacLibrary().catch(() => {}), config.queues.reconcileIntervalMs);
      reload.unref();
      cleanups.push(['MAC library reload', async () => clearInterval(reload)]);
    }

    let app: FastifyInstance | null = null;
    let httpPort: number | null = null;
    // How /readyz learns the SIP server answers (null: none runs or is configured).
    // A child still starting is not ready yet; without Kamailio installed, calls are off.
    const kamailio = config.sip.mode === 'child' && role === 'all' ? findKamailio(env.PATH) : null;
    let sipServerPid = (): number | null => null;
    let sipAlive: (() => Promise<boolean>) | null = config.sip.mode === 'external' ? () => canConnect(sip!.host, sip!.ports.tcp) : kamailio ? async () => false : null;
    if (runs.api) {
      // In a cluster the broker lives in gateway processes: ready while at least one holds a lease.
      let gatewaysAlive = true;
      if (cluster) {
        const check = async () => {
          gatewaysAlive = (await liveGateways(redis.client, queuePrefix).catch(() => [])).length > 0;
        };
        await check();
        const timer = setInterval(() => void check(), 2000);
        timer.unref();
        cleanups.push(['gateway liveness', async () => clearInterval(timer)]);
      }
      const spreadsheets = new SpreadsheetReader(config.spreadsheets, (text) => logger.warn({ parserError: text }, 'a spreadsheet could not be read'));
      cleanups.push(['spreadsheet readers', async () => spreadsheets.close()]);
      const api = await buildApi({
        logger,
        spreadsheets,
        accounts,
        macLibrary,
        devices,
        directory,
        appStations,
        writes: new WriteAuditLog(database.db),
        deviceDirectory: { renders: directoryRenders, documents },
        provisioning,
        deviceAccess: { keys, effectiveConfig: (mac) => configurations.effective(mac), documents },
        firmware: { catalogue, upgrades, maxImageBytes: config.firmware.maxImageBytes, maxDownloads: config.firmware.maxDownloads },
        version: packageVersion(),
        shared: { redis: redis.client, prefix: queuePrefix },
        metrics: { endpoint: clusterMetrics, local: metrics },
        readiness: {
          database: () => database.ping(),
          redis: async () => void (await redis.client.ping()),
          broker: () => (gateway ? gateway.isReady() : gatewaysAlive),
          ...(config.sip.mode !== 'off' && { sip: async () => (sipAlive ? ((await sipAlive()) ? 'ok' : 'failing') : 'off') }),
        },
        calls,
        trustProxy: config.http.trustProxy,
      });
      app = api;
      limitHttpServer(api.server, httpLimits(config), refusalLog(logger, 'http'));
      api.server.on('upgrade', (req, socket, head) => {
        if (gateway && (req.url ?? '').split('?')[0] === '/mqtt') gateway.handleUpgrade(req, socket, head);
        else socket.destroy();
      });
      await api.listen({ host: config.http.host, port: config.http.port });
      // A failed accept (EMFILE) must not end the process: the listener goes on once files are free.
      api.server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'HTTP accept failed; still listening'));
      cleanups.push([
        'http and device sessions',
        async () => {
          // Connections busy when close() began turn idle later; close them as they do instead of
          // waiting out the keep-alive timeout.
          const sweep = setInterval(() => api.server.closeIdleConnections(), 50);
          try {
            await Promise.all([api.close(), gateway?.stop()]);
          } finally {
            clearInterval(sweep);
          }
        },
      ]);
      httpPort = (api.server.address() as { port: number }).port;
      if (!publicUrl) publicUrl = `http://${reachableHost(config.http.host)}:${httpPort}`;
    }

    let wsPort: number | null = null;
    let mqttPorts: ListeningPorts | null = null;
    if (gateway) {
      if (cluster) {
        // A gateway process serves MQTT over WebSocket and its health on its own port.
        const server = gatewayHttp(gateway, { database: () => database.ping(), redis: async () => void (await redis.client.ping()) });
        // Its connections are device sessions (MQTT over WebSocket): the MQTT caps, the HTTP timeouts.
        limitHttpServer(server, { ...httpLimits(config), maxConnections: config.mqtt.maxConnections + 1000, maxConnectionsPerAddress: config.mqtt.maxConnectionsPerAddress }, refusalLog(logger, 'gateway http'));
        await new Promise<void>((resolve, reject) => server.once('error', reject).listen(config.mqtt.wsPort, config.mqtt.host, () => resolve()));
        server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'gateway HTTP accept failed; still listening'));
        cleanups.push(['gateway http', () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections()))]);
        wsPort = (server.address() as { port: number }).port;
        const lease = new GatewayLease(redis.client, queuePrefix, instance, logger);
        const inbox = new GatewayInbox(redis.client, queuePrefix, instance, (m) => gateway.deliver(m), logger);
        cleanups.push(['gateway lease and inbox', async () => void (await Promise.all([lease.stop(), inbox.stop()]))]);
        await inbox.start();
        await lease.start();
        // Redis came back (perhaps empty): the sessions held here are written back so commands find them.
        let connectedOnce = redis.client.status === 'ready';
        redis.client.on('ready', () => {
          if (!connectedOnce) return void (connectedOnce = true);
          gateway
            .restoreSessions()
            .then((n) => logger.info({ sessions: n }, 'Redis is back: sessions written back into the registry'))
            .catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'sessions not written back into the registry'));
        });
      } else wsPort = httpPort;
      mqttPorts = await gateway.listen();
    }
    // Kamailio's back end listens apart from the public port (SIP_BACKEND_HOST, loopback by default): a
    // public client that takes every HTTP connection cannot make SIP authentication fail.
    let sipBackendPort: number | null = null;
    let backendUrl = '';
    if (runs.api && sipBackendToken && (config.sip.mode === 'external' || kamailio)) {
      const backend = await buildSipBackend({ logger, calls, token: sipBackendToken, headersTimeoutMs: config.http.headersTimeoutMs, requestTimeoutMs: config.http.requestTimeoutMs });
      cleanups.push(['sip back end', () => backend.close()]);
      await backend.listen({ host: config.sip.backend.host, port: config.sip.backend.port });
      backend.server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'SIP back end accept failed; still listening'));
      sipBackendPort = (backend.server.address() as { port: number }).port;
      const host = reachableHost(config.sip.backend.host);
      backendUrl = `http://${host.includes(':') ? `[${host}]` : host}:${sipBackendPort}/internal/sip`;
    }
    if (config.sip.mode === 'child' && role === 'all' && httpPort !== null) {
      if (!kamailio) logger.warn('kamailio is not installed (Debian: apt-get install kamailio kamailio-websocket-modules kamailio-tls-modules kamailio-utils-modules): calls are off');
      else {
        const ports = await sipPorts(config.sip);
        const publicHost = sipPublicHost(config, publicUrl);
        const settings: KamailioSettings = {
          listenHost: config.sip.listenHost,
          publicHost,
          domain: config.sip.domain ?? publicHost,
          ports,
          tls: config.mqtt.tls ? { certFile: config.mqtt.tls.certFile, keyFile: config.mqtt.tls.keyFile } : null,
          backendUrl,
          backendToken: sipBackendToken!,
          authFailures: config.sip.authFailures,
          authBlockSeconds: config.sip.authBlockSeconds,
          ringTimeoutSeconds: config.sip.ringTimeoutSeconds,
          children: config.sip.workers,
          maxConnections: config.sip.maxConnections,
          logLevel: config.logLevel === 'debug' || config.logLevel === 'trace' ? 'info' : 'warn',
          modulesDir: kamailio.modulesDir,
        };
        // Kamailio is restarted when it dies (1 s, doubling to 30 s): calls come back by themselves.
        const child = await superviseKamailio(kamailio.binary, settings, logger);
        sipServerPid = () => child.pid();
        cleanups.push(['kamailio', () => child.stop()]);
        sip = {
          domain: settings.domain,
          host: publicHost,
          ports: { udp: ports.udp, tcp: ports.tcp, tls: config.mqtt.tls ? ports.tls : null, ws: ports.ws, wss: config.mqtt.tls ? ports.wss : null },
        };
        sipAlive = async () => child.alive() && (await canConnect(reachableHost(config.sip.listenHost), ports.tcp));
      }
    }
    logger.info({ role, instance, http: httpPort, mqtt: mqttPorts?.mqtt, mqtts: mqttPorts?.mqtts, websocket: wsPort, sip, sipBackend: sipBackendPort }, 'intercom device cloud listening');

    let closing: Promise<void> | null = null;
    return {
      role,
      instance,
      ports: { http: httpPort, mqtt: mqttPorts?.mqtt ?? null, mqtts: mqttPorts?.mqtts ?? null, ws: wsPort, sipBackend: sipBackendPort },
      publicUrl,
      database,
      redis,
      queuePrefix,
      gateway,
      engine,
      scheduler: runs.engine ? scheduler : null,
      upgrades,
      follower,
      appStations,
      app,
      calls,
      sip,
      sipServerPid: () => sipServerPid(),
      factorySecret,
      generatedAdminToken: bootstrap.generatedToken,
      close: () => (closing ??= cleanup()),
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** A gateway process's own HTTP port: MQTT over WebSocket at /mqtt, /healthz and /readyz. */
function gatewayHttp(gateway: DeviceGateway, checks: { database: () => Promise<void>; redis: () => Promise<void> }): Server {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return send(405, { error: { code: 'method_not_allowed', message: 'only GET', details: {} } });
    if (path === '/healthz') return send(200, { status: 'ok' });
    if (path === '/readyz') {
      const state = (p: Promise<void>) => Promise.race([p, new Promise<void>((_, r) => setTimeout(() => r(new Error('timeout')), 2000).unref())]).then(() => 'ok' as const, () => 'failing' as const);
      void Promise.all([state(checks.database()), state(checks.redis())]).then(([database, redis]) => {
        const broker = gateway.isReady() ? 'ok' : 'failing';
        const ready = database === 'ok' && redis === 'ok' && broker === 'ok';
        send(ready ? 200 : 503, { status: ready ? 'ready' : 'not-ready', checks: { database, redis, broker } });
      });
      return;
    }
    send(404, { error: { code: 'not_found', message: 'a gateway process serves /mqtt (WebSocket), /healthz and /readyz', details: {} } });
  });
  server.on('upgrade', (req, socket, head) => {
    if ((req.url ?? '').split('?')[0] === '/mqtt') gateway.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  return server;
}


/** The timeouts and caps of every public HTTP listener; trusted proxies are exempt from the per-address cap. */
function httpLimits(config: Config): HttpLimits {
  const { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, trustProxy } = config.http;
  return { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, exempt: trustProxy };
}

/** The host stations are told: SIP_PUBLIC_HOST, else the host of the public URL. */
function sipPublicHost(config: Config, publicUrl: string): string {
  return config.sip.publicHost ?? (publicUrl ? new URL(publicUrl).hostname : reachableHost(config.sip.listenHost));
}

function externalSipEndpoint(config: Config): SipEndpoint {
  const host = config.sip.publicHost ?? config.sip.server!;
  const { ports } = config.sip;
  return { domain: config.sip.domain ?? host, host, ports: { udp: ports.udp, tcp: ports.tcp, tls: ports.tls, ws: ports.ws, wss: ports.wss } };
}


