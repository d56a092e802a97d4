import type { AppStatus } from '../calls/app-status.js';
import type { ClusterBus } from '../cluster/bus.js';
import { RedisLease } from '../cluster/lease.js';
import { liveGateways } from '../cluster/routing.js';
import type { PresenceStore } from '../devices/presence.js';
import { DirectoryFollower } from '../directory/follower.js';
import { doorLogSink } from '../doors/door-log-sink.js';
import { outboundJobSink } from '../events/job-sink.js';
import { PresenceFollower } from '../events/presence-follower.js';
import { WebhookDelivery } from '../webhooks/delivery.js';
import type { WebhookEndpoints } from '../webhooks/service.js';
import { upgradeStatusSink } from '../firmware/upgrade-status-sink.js';
import { metricsSink } from '../metrics/job-sink.js';
import { JobEventFollower } from '../provisioning/job-events.js';
import type { DirectoryService } from '../directory/service.js';
import type { Metrics } from '../metrics/registry.js';
import type { Jobs } from './domains.js';
import type { ProcessBase } from './process.js';

/** How often expired idempotency keys and documents no device may fetch any more are removed. */
const HOUSEKEEPING_MS = 3600_000;
/** How often an engine process looks for gateway processes that died holding devices shown online. */
const DEAD_GATEWAY_SWEEP_MS = 5000;

/** The directory follower of an engine process; in a cluster only the one holding its lease renders a change. */
export function buildDirectoryFollower(base: ProcessBase, jobs: Jobs): DirectoryFollower {
  const { cluster, redis, queuePrefix, instance, config, database, logger } = base;
  const lease = cluster ? new RedisLease(redis.client, `${queuePrefix}:lease:directory-follower`, instance, 3 * config.queues.reconcileIntervalMs) : null;
  return new DirectoryFollower(database.db, jobs.documents, async (macs) => void (await jobs.provisioning.followDirectory(macs)), logger, lease ? () => lease.held() : undefined);
}

/**
 * The job event outbox's follower of an engine process, with its sinks (metrics, upgrade status); in a
 * cluster only the one holding its lease follows.
 */
export function buildJobEventFollower(base: ProcessBase, metrics: Metrics): JobEventFollower {
  const { cluster, redis, queuePrefix, instance, config, database, logger } = base;
  const lease = cluster ? new RedisLease(redis.client, `${queuePrefix}:lease:job-events`, instance, 3 * config.queues.reconcileIntervalMs) : null;
  const follower = new JobEventFollower({ database, log: logger.child({ component: 'job-events' }), mayRun: lease ? () => lease.held() : undefined, listenUrl: config.databaseUrl });
  follower.register(metricsSink(metrics));
  follower.register(upgradeStatusSink());
  follower.register(doorLogSink());
  follower.register(outboundJobSink());
  return follower;
}

/** Directory changes reach the follower: here, or over the bus from the process that made them. */
export function routeDirectoryChanges(directory: DirectoryService, follower: DirectoryFollower | null, bus: ClusterBus | null): void {
  if (follower) {
    if (bus) bus.onDirectoryChanged(follower.poke);
    else directory.onChange(follower.poke);
  } else if (bus) directory.onChange(bus.directoryChanged);
}

/**
 * The engine role, once the engine runs: the upgrade schedule, the directory follower, housekeeping and,
 * in a cluster, the sweep of devices a dead gateway process left shown online.
 */
export async function startEngineRole(base: ProcessBase, parts: { jobs: Jobs; follower: DirectoryFollower; jobEvents: JobEventFollower; presence: PresenceStore; metrics: Metrics; appStatus: AppStatus; webhooks: WebhookEndpoints }): Promise<void> {
  const { config, logger, shutdown } = base;
  const { jobs, follower, jobEvents } = parts;
  parts.metrics.watchQueue('provisioning', () => jobs.engine.queueCounts());
  shutdown.add('upgrade scheduler', () => jobs.scheduler.stop());
  await jobs.scheduler.start();
  shutdown.add('job event follower', () => jobEvents.stop());
  jobEvents.start();
  shutdown.add('directory follower', () => follower.stop());
  follower.start(config.queues.reconcileIntervalMs);
  shutdown.every('housekeeping', HOUSEKEEPING_MS, () => {
    Promise.all([jobs.idempotency.sweep(), jobs.documents.sweep(), parts.appStatus.snapshot()]).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'housekeeping failed'));
  });
  if (base.cluster) sweepDeadGateways(base, parts.presence);
  startEventsOut(base, parts.webhooks);
}

/** Presence for integrators (grace, flapping, outages) and webhook delivery: one engine process each, by lease. */
function startEventsOut(base: ProcessBase, webhooks: WebhookEndpoints): { presence: PresenceFollower; delivery: WebhookDelivery } {
  const { cluster, redis, queuePrefix, instance, config, database, logger, shutdown } = base;
  const lease = (name: string) => (cluster ? new RedisLease(redis.client, `${queuePrefix}:lease:${name}`, instance, 3 * config.queues.reconcileIntervalMs) : null);
  const presenceLease = lease('presence-events');
  const presence = new PresenceFollower({ database, log: logger.child({ component: 'presence-events' }), policy: config.events.presence, ...(presenceLease ? { mayRun: () => presenceLease.held() } : {}) });
  // Deliveries are claimed with SKIP LOCKED: every engine process may send; the fan-out takes turns by its cursor row.
  const delivery = new WebhookDelivery({ database, log: logger.child({ component: 'webhooks' }), policy: webhooks.policyOf(), ...config.events.webhooks, retentionMs: config.events.retentionMs });
  webhooks.poke = delivery.poke;
  shutdown.add('presence events', () => presence.stop());
  shutdown.add('webhook delivery', () => delivery.stop());
  presence.start();
  delivery.start();
  eventsOut = { presence, delivery };
  return eventsOut;
}

/** This process's presence follower and webhook sender (tests move the presence clock). */
export let eventsOut: { presence: PresenceFollower; delivery: WebhookDelivery } | null = null;

/** A gateway process that died (kill -9, lost machine) cannot mark its devices offline: once its lease lapses, one engine process does. */
function sweepDeadGateways(base: ProcessBase, presence: PresenceStore): void {
  const { redis, queuePrefix, instance, logger } = base;
  const sweepLease = new RedisLease(redis.client, `${queuePrefix}:lease:dead-gateway-sweep`, instance, 3 * DEAD_GATEWAY_SWEEP_MS);
  base.shutdown.every('dead gateway sweep', DEAD_GATEWAY_SWEEP_MS, () => {
    void (async () => {
      if (!(await sweepLease.held())) return;
      const live = new Set(await liveGateways(redis.client, queuePrefix));
      for (const g of await presence.gatewaysHoldingDevices()) {
        if (live.has(g)) continue;
        const n = await presence.markGatewayOffline(g);
        if (n) logger.warn({ gateway: g, devices: n }, 'a gateway process stopped renewing its lease; its devices are offline until they reconnect');
      }
    })().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'dead gateway sweep failed'));
  });
}
