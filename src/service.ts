import type { AppStatus } from './calls/app-status.js';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { AccountService } from './accounts/service.js';
import type { AppStations } from './calls/app-stations.js';
import type { SipEndpoint } from './calls/kamailio.js';
import type { CallService } from './calls/service.js';
import { ClusterCommandChannel } from './cluster/routing.js';
import type { Config, Role } from './config.js';
import { deploymentId, openDatabase, runMigrations, type Database } from './db/client.js';
import type { DeviceGateway, ListeningPorts } from './device-gateway/gateway.js';
import { DeviceKeys } from './devices/device-key.js';
import type { DirectoryFollower } from './directory/follower.js';
import type { JobEventFollower } from './provisioning/job-events.js';
import type { UpgradeScheduler } from './firmware/scheduler.js';
import type { UpgradeService } from './firmware/upgrades.js';
import { connectRedis, type RedisHandle } from './infra/redis.js';
import { resolveFactorySecret } from './infra/secrets.js';
import type { Logger } from './logger.js';
import type { ProvisioningEngine } from './provisioning/engine.js';
import type { JobKindHandler } from './provisioning/kinds.js';
import type { ProvisioningService } from './provisioning/service.js';
import { DomainEvents } from './shared/events.js';
import { forgetRemovedDevices, startApi } from './roles/api.js';
import { buildDomains, buildJobs } from './roles/domains.js';
import { buildDirectoryFollower, buildJobEventFollower, routeDirectoryChanges, startEngineRole } from './roles/engine.js';
import { buildGateway, listenGateway, reloadMacLibraryPeriodically, startGateway } from './roles/gateway.js';
import { instanceName, runsOf, Shutdown, startSharedParts, type ProcessBase } from './roles/process.js';
import { SipServer } from './roles/sip.js';

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
  provisioning: ProvisioningService;
  follower: DirectoryFollower;
  /** Follows the job event outbox (null where this process does not). */
  jobEvents: JobEventFollower | null;
  appStations: AppStations;
  /** Status of Apps (the engine records each day's figures). */
  appStatus: AppStatus;
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
  provisioning: ProvisioningService;
  follower: DirectoryFollower | null;
  jobEvents: JobEventFollower | null;
  appStations: AppStations;
  /** Status of Apps (the engine records each day's figures). */
  appStatus: AppStatus;
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

/** What a deployment adds to the service as it starts: job kinds beyond the built-in ones. */
export interface Plugins {
  kinds?: JobKindHandler[];
}

/** Starts the whole service in one process: database (migrated), Redis, device gateway, provisioning engine, REST API. */
export async function startService(config: Config, logger: Logger, env: { PATH?: string } = {}, plugins: Plugins = {}): Promise<RunningService> {
  const p = await startProcess({ ...config, role: 'all' }, logger, env, plugins);
  return { ...p, ports: { http: p.ports.http!, mqtt: p.ports.mqtt!, mqtts: p.ports.mqtts, sipBackend: p.ports.sipBackend }, gateway: p.gateway!, scheduler: p.scheduler!, follower: p.follower!, app: p.app! };
}

/**
 * Starts one process in its role. `all` runs everything; in a cluster (docs/deployment.md) `gateway` holds
 * device sessions and takes their answers, `engine` drives jobs, the upgrade schedule and the directory
 * follower, `api` serves HTTP. The processes share PostgreSQL and Redis: commands are routed to the
 * process holding the device's session, domain events travel over Redis, wake-ups are counted there.
 * Each role's parts live in `src/roles/`; this composes the ones the role runs, in the order they need.
 */
export async function startProcess(config: Config, logger: Logger, env: { PATH?: string } = {}, plugins: Plugins = {}): Promise<RunningProcess> {
  const role = config.role;
  const cluster = role !== 'all';
  const runs = runsOf(role);
  const instance = instanceName();
  // An engine builds the URLs devices fetch documents and firmware from, and serves no HTTP itself.
  if (role === 'engine' && !config.publicUrl) throw new Error('role engine needs PUBLIC_URL: the address devices reach the API at (documents, firmware downloads)');
  if (cluster && !config.databaseUrl) throw new Error(`role ${role} needs DATABASE_URL: the processes of a cluster share one PostgreSQL (the embedded database belongs to one process)`);
  const database = await openDatabase({
    url: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    policy: config.databasePolicy,
    onConnectionError: (err) => logger.warn({ err: err.message }, 'database connection lost; the pool reconnects'),
    onReachability: (s) => (s.reachable ? logger.info('database reachable again') : logger.warn({ err: s.err, retryInMs: s.delayMs }, 'database unreachable; calls fail at once until the next attempt')),
    closeGraceMs: config.shutdownGraceMs,
    onCloseOverdue: (s) => logger.error(s, 'database connections still checked out at shutdown were destroyed (a connection leak)'),
  });
  const shutdown = new Shutdown(logger);
  shutdown.add('database', () => database.close());
  try {
    const factorySecret = resolveFactorySecret(config.deviceFactorySecret, config.dataDir, logger);
    const keys = new DeviceKeys(factorySecret);
    const events = new DomainEvents();
    const accounts = new AccountService(database.db);
    const { queuePrefix, bootstrap } = await prepareDatabase(database, accounts, config);
    logger.info({ database: database.kind, queuePrefix, role }, 'database ready');
    const redis = await connectRedis({ url: config.redis.url, explicit: config.redis.explicit, pathEnv: env.PATH, logger });
    shutdown.add('redis', () => redis.close());
    const base: ProcessBase = { config, logger, role, cluster, runs, instance, database, redis, queuePrefix, shutdown, reach: { publicUrl: config.publicUrl ?? '', sip: null } };

    // Calls: the SIP endpoint is known now for an external server, after Kamailio started for a child.
    const sip = new SipServer(base, env);
    const domains = buildDomains(base, accounts, events);
    const { metrics, clusterMetrics, bus } = await startSharedParts(base, events);
    const gateway = runs.gateway ? buildGateway(base, { keys, domains, events, bus, metrics }) : null;
    // Alone, commands go straight to this process's gateway; in a cluster, to the process holding the session.
    const jobs = await buildJobs(base, domains, cluster ? new ClusterCommandChannel(redis.client, queuePrefix) : gateway!, events, bus, plugins.kinds);
    const follower = runs.engine ? buildDirectoryFollower(base, jobs) : null;
    const jobEvents = runs.engine ? buildJobEventFollower(base, metrics) : null;
    routeDirectoryChanges(domains.directory, follower, bus);
    if (runs.api) forgetRemovedDevices(base, events, jobs);

    if (gateway) await startGateway(base, gateway, jobs.engine, bus, metrics);
    shutdown.add('provisioning engine', () => jobs.engine.stop());
    await jobs.engine.start();
    if (follower && jobEvents) await startEngineRole(base, { jobs, follower, jobEvents, presence: domains.presence, metrics, appStatus: domains.appStatus, webhooks: domains.webhooks });
    if (gateway && cluster) reloadMacLibraryPeriodically(base, gateway);

    const api = runs.api ? await startApi(base, { version: packageVersion(), accounts, keys, domains, jobs, metrics: { endpoint: clusterMetrics, local: metrics }, sip, gateway, bus }) : null;
    const httpPort = api?.httpPort ?? null;
    const listening = gateway ? await listenGateway(base, gateway, httpPort) : null;
    if (runs.api) await sip.startBackend(domains.calls);
    await sip.startChild(httpPort);
    const wsPort = listening?.wsPort ?? null;
    const mqttPorts = listening?.mqttPorts;
    logger.info({ role, instance, http: httpPort, mqtt: mqttPorts?.mqtt, mqtts: mqttPorts?.mqtts, websocket: wsPort, sip: base.reach.sip, sipBackend: sip.backendPort }, 'intercom device cloud listening');

    let closing: Promise<void> | null = null;
    return {
      role,
      instance,
      ports: { http: httpPort, mqtt: mqttPorts?.mqtt ?? null, mqtts: mqttPorts?.mqtts ?? null, ws: wsPort, sipBackend: sip.backendPort },
      publicUrl: base.reach.publicUrl,
      database,
      redis,
      queuePrefix,
      gateway,
      engine: jobs.engine,
      scheduler: runs.engine ? jobs.scheduler : null,
      upgrades: jobs.upgrades,
      provisioning: jobs.provisioning,
      follower,
      jobEvents,
      appStations: domains.appStations,
      appStatus: domains.appStatus,
      app: api?.app ?? null,
      calls: domains.calls,
      sip: base.reach.sip,
      sipServerPid: () => sip.pid(),
      factorySecret,
      generatedAdminToken: bootstrap.generatedToken,
      close: () => (closing ??= shutdown.run()),
    };
  } catch (err) {
    await shutdown.run();
    throw err;
  }
}
