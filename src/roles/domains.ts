import type { AccountService } from '../accounts/service.js';
import { AppStations } from '../calls/app-stations.js';
import { AppStatus } from '../calls/app-status.js';
import { appSipAccess } from '../calls/kamailio.js';
import { withdrawIxgApps } from '../calls/ixg-apps.js';
import { CallService } from '../calls/service.js';
import { RedisWakeGenerations } from '../cluster/wakes.js';
import { DeviceService } from '../devices/service.js';
import { PresenceStore } from '../devices/presence.js';
import { DirectoryRenders } from '../directory/follower.js';
import { DirectoryService } from '../directory/service.js';
import { DocumentStore } from '../documents/service.js';
import { IxgSites } from '../ixg/service.js';
import { openDoorKind } from '../doors/open-door-kind.js';
import { RemoteDoors } from '../doors/service.js';
import { EventStreams } from '../events/stream.js';
import { AddressPolicy } from '../webhooks/ssrf.js';
import { WebhookEndpoints } from '../webhooks/service.js';
import { FirmwareCatalogue } from '../firmware/catalogue.js';
import { UpgradeScheduler } from '../firmware/scheduler.js';
import { FirmwareStorage } from '../firmware/storage.js';
import { upgradeKind } from '../firmware/upgrade-kind.js';
import { UpgradeService } from '../firmware/upgrades.js';
import { MacLibraryService } from '../mac-library/service.js';
import type { CommandChannel } from '../provisioning/channel.js';
import { Configurations } from '../provisioning/configuration.js';
import { ProvisioningEngine } from '../provisioning/engine.js';
import { DeviceOwners } from '../provisioning/device-owners.js';
import { GroupedEnqueue } from '../provisioning/grouped-enqueue.js';
import { IdempotentRequests } from '../provisioning/idempotency.js';
import { provisioningKinds } from '../provisioning/job-kinds.js';
import { JobStore } from '../provisioning/job-store.js';
import { JobKinds, type JobKindHandler } from '../provisioning/kinds.js';
import { ProvisioningService } from '../provisioning/service.js';
import type { DomainEvents } from '../shared/events.js';
import type { ClusterBus } from '../cluster/bus.js';
import type { ProcessBase } from './process.js';

/** The directory, devices, MAC library, presence and calls: every role uses them. */
export function buildDomains(base: ProcessBase, accounts: AccountService, events: DomainEvents) {
  const { database, config, reach } = base;
  const directory = new DirectoryService(database.db);
  const devices = new DeviceService(database.db, events, directory.placements);
  const macLibrary = new MacLibraryService(database.db, accounts, events);
  const presence = new PresenceStore(database.db);
  const appStations = new AppStations({
    db: database.db,
    directory,
    registrationUrl: (code) => `${reach.publicUrl}/api/v1/app-registrations/${code}`,
    sipEndpoint: () => reach.sip && appSipAccess(reach.sip),
  });
  // A reset or removed apartment takes its app stations and codes with it, in the directory's transaction.
  directory.apartments.useTenantAccess(appStations);
  const calls = new CallService(database.db, directory, appStations, () => reach.sip?.domain ?? config.sip.domain ?? 'sip.invalid');
  const ixg = new IxgSites(database.db, directory, { withdrawIxgApps });
  const appStatus = new AppStatus(database.db, directory);
  // Events out: webhook endpoints (their reach checked by one address policy) and the live stream.
  const addressPolicy = new AddressPolicy(config.events.webhooks.allowedNetworks);
  const webhooks = new WebhookEndpoints(database.db, addressPolicy);
  const streams = new EventStreams(database);
  return { directory, devices, macLibrary, presence, appStations, calls, ixg, appStatus, addressPolicy, webhooks, streams };
}

export type Domains = ReturnType<typeof buildDomains>;

/**
 * Jobs and what makes them: documents, configurations, the kinds, the engine (a worker only where the
 * role drives jobs: gateway and API processes make and wake jobs), firmware and its upgrade schedule.
 */
export async function buildJobs(base: ProcessBase, domains: Domains, channel: CommandChannel, events: DomainEvents, bus: ClusterBus | null, extraKinds: JobKindHandler[] = []) {
  const { database, config, logger, redis, queuePrefix, reach } = base;
  const documents = new DocumentStore(database);
  const directoryRenders = new DirectoryRenders(database);
  const configurations = new Configurations(database, domains.devices, documents, directoryRenders, (sha256) => `${reach.publicUrl}/documents/${sha256}`, () => reach.sip);
  // The job machine's one clock: the engine, the store and the kinds stamp every transition with it.
  const now = Date.now;
  const store = new JobStore(database, now);
  const kinds = new JobKinds();
  for (const kind of provisioningKinds(configurations, store, now, domains.devices)) kinds.register(kind);
  kinds.register(upgradeKind((firmwareId) => `${reach.publicUrl}/firmware/${firmwareId}/image`));
  kinds.register(openDoorKind());
  for (const kind of extraKinds) kinds.register(kind);
  const engine = new ProvisioningEngine({
    store,
    redis: redis.client,
    devices: domains.devices,
    kinds,
    channel,
    logger,
    queuePrefix,
    policy: { ackTimeoutMs: config.jobs.ackTimeoutMs, maxAckBackoffMs: 5 * 60_000, inProgressTimeoutMs: config.jobs.inProgressTimeoutMs, maxAttempts: config.jobs.maxAttempts },
    concurrency: config.jobs.concurrency,
    queueTimeoutMs: config.queues.timeoutMs,
    reconcileIntervalMs: config.queues.reconcileIntervalMs,
    wakes: base.cluster ? new RedisWakeGenerations(redis.client, queuePrefix) : undefined,
    worker: base.runs.engine,
    now,
  });
  const idempotency = new IdempotentRequests(database.db);
  // The job request path: device owners kept (dropped on deletion, here and over the bus), twins enqueued per tick.
  const owners = new DeviceOwners(domains.devices, [events, bus?.remote], bus);
  const provisioning = new ProvisioningService(database.db, domains.devices, engine, idempotency, owners, new GroupedEnqueue((ids) => engine.enqueue(ids)));
  const storage = new FirmwareStorage(config.dataDir);
  await storage.init();
  const catalogue = new FirmwareCatalogue(database.db, storage, config.firmware.maxImageBytes);
  const upgrades = new UpgradeService(database.db, domains.devices, provisioning);
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
  const doors = new RemoteDoors({ db: database.db, devices: domains.devices, directory: domains.directory, provisioning, apps: domains.appStations, channel, expirySeconds: config.doors.openExpirySeconds, waitMs: config.doors.openWaitMs, finishes: (listener) => store.onFinished(listener) });
  return { documents, directoryRenders, configurations, engine, idempotency, provisioning, catalogue, upgrades, scheduler, doors };
}

export type Jobs = Awaited<ReturnType<typeof buildJobs>>;
