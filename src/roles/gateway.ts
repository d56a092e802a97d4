import { createServer, type Server } from 'node:http';
import type { ClusterBus } from '../cluster/bus.js';
import { GatewayInbox, GatewayLease, RedisSessionRegistry } from '../cluster/routing.js';
import { DeviceGateway, type ListeningPorts } from '../device-gateway/gateway.js';
import type { DeviceKeys } from '../devices/device-key.js';
import { limitHttpServer, refusalLog } from '../infra/connection-caps.js';
import type { Metrics } from '../metrics/registry.js';
import { AnswerInbox } from '../provisioning/answer-inbox.js';
import type { DeviceEventSink } from '../provisioning/channel.js';
import type { DomainEvents } from '../shared/events.js';
import type { Domains } from './domains.js';
import { httpLimits, type ProcessBase } from './process.js';

/** The gateway role: device sessions (MQTT, MQTTS, MQTT over WebSocket) and what devices say. */
export function buildGateway(base: ProcessBase, parts: { keys: DeviceKeys; domains: Domains; events: DomainEvents; bus: ClusterBus | null; metrics: Metrics }): DeviceGateway {
  const { config, cluster, redis, queuePrefix, instance, logger } = base;
  const { presence, macLibrary, calls } = parts.domains;
  return new DeviceGateway({
    mqtt: config.mqtt,
    presenceFlushMs: config.presenceFlushMs,
    keys: parts.keys,
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
    events: parts.bus ? parts.bus.remote : parts.events,
    logger,
    metrics: parts.metrics,
    deviceEvents: (mac, event) => calls.recordDoorEvent(mac, event),
  });
}

/** Starts the broker with the engine as the sink of what devices say; it accepts connections only at `listenGateway`. */
export async function startGateway(base: ProcessBase, gateway: DeviceGateway, sink: DeviceEventSink, bus: ClusterBus | null, metrics: Metrics): Promise<void> {
  const { shutdown, logger } = base;
  // What devices say waits out a database or Redis outage in order instead of being lost.
  const inbox = new AnswerInbox(sink, { log: logger, metrics: { waiting: metrics.deviceAnswersWaiting, dropped: metrics.deviceAnswersDropped } });
  shutdown.add('answer inbox', () => inbox.stop());
  gateway.setSink(inbox);
  shutdown.add('device gateway', () => gateway.stop());
  await gateway.start();
  if (bus) bus.onReconnect(() => void gateway.refreshMacLibrary().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'MAC library not reloaded')));
}

/** In a cluster: the MAC library cache never drifts for long even if an event was lost. */
export function reloadMacLibraryPeriodically(base: ProcessBase, gateway: DeviceGateway): void {
  base.shutdown.every('MAC library reload', base.config.queues.reconcileIntervalMs, () => void gateway.refreshMacLibrary().catch(() => {}));
}

/**
 * Opens the device listeners. Alone, MQTT over WebSocket shares the API's HTTP port (`httpPort`); in a
 * cluster the gateway serves it on a port of its own, renews its lease and takes the commands routed to it.
 */
export async function listenGateway(base: ProcessBase, gateway: DeviceGateway, httpPort: number | null): Promise<{ wsPort: number | null; mqttPorts: ListeningPorts }> {
  const { config, cluster, database, redis, queuePrefix, instance, logger, shutdown } = base;
  let wsPort = httpPort;
  if (cluster) {
    const server = gatewayHttp(gateway, { database: () => database.ping(), redis: async () => void (await redis.client.ping()) });
    // Its connections are device sessions (MQTT over WebSocket): the MQTT caps, the HTTP timeouts.
    limitHttpServer(server, { ...httpLimits(config), maxConnections: config.mqtt.maxConnections + 1000, maxConnectionsPerAddress: config.mqtt.maxConnectionsPerAddress }, refusalLog(logger, 'gateway http'));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(config.mqtt.wsPort, config.mqtt.host, () => resolve()));
    server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'gateway HTTP accept failed; still listening'));
    shutdown.add('gateway http', () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())));
    wsPort = (server.address() as { port: number }).port;
    const lease = new GatewayLease(redis.client, queuePrefix, instance, logger);
    const inbox = new GatewayInbox(redis.client, queuePrefix, instance, (m) => gateway.deliver(m), logger);
    shutdown.add('gateway lease and inbox', async () => void (await Promise.all([lease.stop(), inbox.stop()])));
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
  }
  return { wsPort, mqttPorts: await gateway.listen() };
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
