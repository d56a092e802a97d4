import type { ClusterBus } from '../cluster/bus.js';
import type { FastifyInstance } from 'fastify';
import type { AccountService } from '../accounts/service.js';
import { buildApi } from '../api/app.js';
import { WriteAuditLog } from '../audit/service.js';
import { liveGateways } from '../cluster/routing.js';
import type { DeviceGateway } from '../device-gateway/gateway.js';
import type { DeviceKeys } from '../devices/device-key.js';
import { limitHttpServer, refusalLog } from '../infra/connection-caps.js';
import { reachableHost } from '../infra/net.js';
import type { ClusterMetrics } from '../metrics/cluster.js';
import type { Metrics } from '../metrics/registry.js';
import type { DomainEvents } from '../shared/events.js';
import { SpreadsheetReader } from '../shared/sheets.js';
import type { Domains, Jobs } from './domains.js';
import { httpLimits, type ProcessBase } from './process.js';
import type { SipServer } from './sip.js';

/** A deleted device's unfinished jobs end, and its documents go: nothing of it reaches the MAC's next owner. */
export function forgetRemovedDevices(base: ProcessBase, events: DomainEvents, jobs: Jobs): void {
  events.on('device.removed', ({ mac }) => {
    Promise.all([jobs.engine.deviceRemoved(mac), jobs.documents.forgetDevice(mac)]).catch((err: unknown) =>
      base.logger.warn({ mac, err: (err as Error).message }, 'cleaning up after a deleted device failed; its jobs fail when next due'),
    );
  });
}

export interface ApiParts {
  version: string;
  accounts: AccountService;
  keys: DeviceKeys;
  domains: Domains;
  jobs: Jobs;
  metrics: { endpoint: ClusterMetrics; local: Metrics };
  sip: SipServer;
  /** The broker of this process (null: gateway processes hold the sessions). */
  gateway: DeviceGateway | null;
  /** Token revocations reach the other API processes' caches over it (null: one process). */
  bus: ClusterBus | null;
}

/**
 * The API role: the public HTTP port (REST API, documents, firmware, /metrics, and MQTT over WebSocket at
 * /mqtt in a single process). Sets the public URL from the port when PUBLIC_URL is not given.
 */
export async function startApi(base: ProcessBase, parts: ApiParts): Promise<{ app: FastifyInstance; httpPort: number }> {
  const { config, logger, cluster, database, redis, queuePrefix, shutdown } = base;
  const { domains, jobs, gateway } = parts;
  // In a cluster the broker lives in gateway processes: ready while at least one holds a lease.
  let gatewaysAlive = true;
  if (cluster) {
    const check = async () => {
      gatewaysAlive = (await liveGateways(redis.client, queuePrefix).catch(() => [])).length > 0;
    };
    await check();
    shutdown.every('gateway liveness', 2000, () => void check());
  }
  const spreadsheets = new SpreadsheetReader(config.spreadsheets, (text) => logger.warn({ parserError: text }, 'a spreadsheet could not be read'));
  shutdown.add('spreadsheet readers', async () => spreadsheets.close());
  const api = await buildApi({
    logger,
    spreadsheets,
    accounts: parts.accounts,
    macLibrary: domains.macLibrary,
    devices: domains.devices,
    directory: domains.directory,
    appStations: domains.appStations,
    ixg: domains.ixg,
    appStatus: domains.appStatus,
    writes: new WriteAuditLog(database.db),
    deviceDirectory: { renders: jobs.directoryRenders, documents: jobs.documents },
    provisioning: jobs.provisioning,
    doors: jobs.doors,
    webhooks: domains.webhooks,
    streams: domains.streams,
    deviceAccess: { keys: parts.keys, effectiveConfig: (mac) => jobs.configurations.effective(mac), documents: jobs.documents },
    firmware: { catalogue: jobs.catalogue, upgrades: jobs.upgrades, maxImageBytes: config.firmware.maxImageBytes, maxDownloads: config.firmware.maxDownloads },
    version: parts.version,
    shared: { redis: redis.client, prefix: queuePrefix },
    metrics: parts.metrics,
    readiness: {
      database: () => database.ping(),
      redis: async () => void (await redis.client.ping()),
      broker: () => (gateway ? gateway.isReady() : gatewaysAlive),
      ...(config.sip.mode !== 'off' && { sip: parts.sip.readiness }),
    },
    calls: domains.calls,
    trustProxy: config.http.trustProxy,
    revocations: parts.bus,
  });
  limitHttpServer(api.server, httpLimits(config), refusalLog(logger, 'http'));
  api.server.on('upgrade', (req, socket, head) => {
    if (gateway && (req.url ?? '').split('?')[0] === '/mqtt') gateway.handleUpgrade(req, socket, head);
    else socket.destroy();
  });
  await api.listen({ host: config.http.host, port: config.http.port });
  // A failed accept (EMFILE) must not end the process: the listener goes on once files are free.
  api.server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'HTTP accept failed; still listening'));
  shutdown.add('http and device sessions', async () => {
    // Connections busy when close() began turn idle later; close them as they do instead of
    // waiting out the keep-alive timeout.
    const sweep = setInterval(() => api.server.closeIdleConnections(), 50);
    try {
      await Promise.all([api.close(), gateway?.stop()]);
    } finally {
      clearInterval(sweep);
    }
  });
  const httpPort = (api.server.address() as { port: number }).port;
  if (!base.reach.publicUrl) base.reach.publicUrl = `http://${reachableHost(config.http.host)}:${httpPort}`;
  return { app: api, httpPort };
}
