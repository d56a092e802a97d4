import { randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { AccountService } from '../accounts/service.js';
import type { AppStations } from '../calls/app-stations.js';
import type { WriteAuditLog } from '../audit/service.js';
import type { DirectoryService } from '../directory/service.js';
import type { DeviceService } from '../devices/service.js';
import type { Logger } from '../logger.js';
import type { MacLibraryService } from '../mac-library/service.js';
import { bearerAuth } from './auth.js';
import { TokenCache, type TokenRevocations } from './token-cache.js';
import { clientError, frameworkError, registerErrorHandling } from './errors.js';
import { accountRoutes } from './routes/accounts.js';
import { memberRoutes } from './routes/members.js';
import { writeAuditRoutes } from './routes/write-audit.js';
import { apartmentRoutes } from './routes/apartments.js';
import { buildingRoutes } from './routes/buildings.js';
import { credentialRoutes } from './routes/credentials.js';
import { deviceDirectoryRoutes, type DeviceDirectoryDeps } from './routes/device-directory.js';
import { deviceRoutes } from './routes/devices.js';
import { residentRoutes } from './routes/residents.js';
import { siteTemplateRoutes } from './routes/site-templates.js';
import { siteRoutes } from './routes/sites.js';
import { healthRoutes, type ReadinessChecks } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import type { Metrics, MetricsEndpoint } from '../metrics/registry.js';
import { macLibraryRoutes } from './routes/mac-library.js';
import { deviceDocumentRoutes, type DeviceDocumentDeps } from './routes/device-documents.js';
import { provisioningRoutes } from './routes/provisioning.js';
import type { ProvisioningService } from '../provisioning/service.js';
import type { FirmwareCatalogue } from '../firmware/catalogue.js';
import type { UpgradeService } from '../firmware/upgrades.js';
import { firmwareRoutes } from './routes/firmware.js';
import { firmwareDownloadRoutes } from './routes/firmware-download.js';
import { SharedSemaphore } from '../infra/shared-semaphore.js';
import { upgradeRoutes } from './routes/upgrades.js';
import type { CallService } from '../calls/service.js';
import { callRoutes } from './routes/calls.js';
import { appRegistrationRoutes, appStationRoutes } from './routes/app-stations.js';
import type { SpreadsheetReader } from '../shared/sheets.js';
import type { IxgSites } from '../ixg/service.js';
import type { AppStatus } from '../calls/app-status.js';
import { ixgRoutes, ixgUploadRoutes } from './routes/ixg.js';
import { doorRoutes } from './routes/doors.js';
import { eventRoutes } from './routes/events.js';
import { webhookRoutes } from './routes/webhooks.js';
import type { WebhookEndpoints } from '../webhooks/service.js';
import type { EventStreams } from '../events/stream.js';
import type { RemoteDoors } from '../doors/service.js';

export interface ApiDeps {
  logger: Logger;
  accounts: AccountService;
  macLibrary: MacLibraryService;
  devices: DeviceService;
  directory: DirectoryService;
  appStations: AppStations;
  writes: WriteAuditLog;
  deviceDirectory: Omit<DeviceDirectoryDeps, 'devices'>;
  provisioning: ProvisioningService;
  deviceAccess: DeviceDocumentDeps;
  firmware: { catalogue: FirmwareCatalogue; upgrades: UpgradeService; maxImageBytes: number; maxDownloads: number };
  readiness: ReadinessChecks;
  version: string;
  /** The deployment's Redis and key prefix: the firmware download cap then holds across all API processes. */
  shared?: { redis: Redis; prefix: string };
  /** `GET /metrics` answers `endpoint` (the deployment's); this process's instruments are `local`. */
  metrics?: { endpoint: MetricsEndpoint; local: Metrics };
  calls: CallService;
  /** Doors opened from the cloud. */
  doors: RemoteDoors;
  /** Webhook endpoints and the live event stream. */
  webhooks: WebhookEndpoints;
  streams: EventStreams;
  /** IXG sites: uploads from their gateways, and their read-only settings. */
  ixg: IxgSites;
  appStatus: AppStatus;
  /** Proxies whose X-Forwarded-For is believed (per-address limits then see the client, not HAProxy). */
  trustProxy?: string[];
  /** Reads uploaded spreadsheets in worker threads, within the configured bounds. */
  spreadsheets: SpreadsheetReader;
  /** How a token revoked here reaches the other API processes' caches (the cluster bus; none alone). */
  revocations?: TokenRevocations | null;
}

const JSON_BODY_LIMIT = 1024 * 1024;

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'api' }) as FastifyBaseLogger,
    bodyLimit: JSON_BODY_LIMIT,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true },
    trustProxy: deps.trustProxy?.length ? deps.trustProxy : false,
    // Refusals fastify answers itself (an undecodable URL, malformed HTTP) carry our error shape too.
    frameworkErrors: frameworkError,
    clientErrorHandler: clientError,
  });
  // JSON routes take JSON: a text/plain body is a 415, not a string handed to the body schema.
  app.removeContentTypeParser('text/plain');
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'Intercom device cloud',
        version: deps.version,
        description: 'MAC library, device registry, remote maintenance, firmware and upgrades for installers and distributors. Devices use the MQTT protocol in docs/device-protocol.md.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, deviceBasic: { type: 'http', scheme: 'basic', description: "a device's MAC and device key" }, appBasic: { type: 'http', scheme: 'basic', description: "an app station's SIP username and password, from its registration" } } },
      security: [{ bearer: [] }],
    },
    // A multipart route validates its parts itself; `config.openapiBody` documents them.
    transform: (args) => {
      const out = jsonSchemaTransform(args);
      const documented = (args.route.config as { openapiBody?: unknown } | undefined)?.openapiBody;
      return documented ? { ...out, schema: { ...out.schema, body: documented } } : out;
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });

  await app.register(healthRoutes, { checks: deps.readiness });
  if (deps.metrics) await app.register(metricsRoutes, { metrics: deps.metrics.endpoint });
  await app.register(deviceDocumentRoutes, deps.deviceAccess);
  await app.register(ixgUploadRoutes, { ixg: deps.ixg, calls: deps.calls, keys: deps.deviceAccess.keys });
  // The download cap holds across every API process of the deployment (a process-local count without Redis).
  const downloadSlots = new SharedSemaphore({
    capacity: deps.firmware.maxDownloads,
    ...(deps.shared && { redis: deps.shared.redis, key: `${deps.shared.prefix}:downloads` }),
    log: deps.logger.child({ component: 'api' }),
  });
  app.addHook('onClose', () => downloadSlots.close());
  await app.register(firmwareDownloadRoutes, { catalogue: deps.firmware.catalogue, keys: deps.deviceAccess.keys, slots: downloadSlots, metrics: deps.metrics?.local });
  // Apps redeem registration codes without a token (the code is the credential).
  await app.register(appRegistrationRoutes, { prefix: '/api/v1', appStations: deps.appStations, shared: deps.shared, log: deps.logger.child({ component: 'api' }) });
  await app.register(
    async (api) => {
      const tokens = new TokenCache(deps.accounts, deps.revocations ?? null);
      api.addHook('onRequest', bearerAuth(tokens, (id) => deps.directory.managedSites(id), deps.appStations));
      await api.register(accountRoutes, { accounts: deps.accounts, tokens });
      await api.register(memberRoutes, { accounts: deps.accounts, directory: deps.directory });
      await api.register(macLibraryRoutes, { macLibrary: deps.macLibrary, spreadsheets: deps.spreadsheets });
      await api.register(deviceRoutes, { devices: deps.devices, calls: deps.calls });
      await api.register(siteTemplateRoutes, { directory: deps.directory, spreadsheets: deps.spreadsheets });
      await api.register(siteRoutes, { directory: deps.directory, writes: deps.writes });
      await api.register(writeAuditRoutes, { writes: deps.writes });
      await api.register(buildingRoutes, { directory: deps.directory });
      await api.register(apartmentRoutes, { directory: deps.directory });
      await api.register(residentRoutes, { directory: deps.directory });
      await api.register(credentialRoutes, { directory: deps.directory });
      await api.register(appStationRoutes, { appStations: deps.appStations, calls: deps.calls, appStatus: deps.appStatus });
      await api.register(deviceDirectoryRoutes, { devices: deps.devices, ...deps.deviceDirectory });
      await api.register(provisioningRoutes, { provisioning: deps.provisioning });
      await api.register(firmwareRoutes, { catalogue: deps.firmware.catalogue, maxImageBytes: deps.firmware.maxImageBytes });
      await api.register(upgradeRoutes, { upgrades: deps.firmware.upgrades });
      await api.register(callRoutes, { calls: deps.calls });
      await api.register(doorRoutes, { doors: deps.doors });
      await api.register(webhookRoutes, { webhooks: deps.webhooks });
      await api.register(eventRoutes, {
        streams: deps.streams,
        // The stream checks its caller again now and then: as the bearer hook does for every request.
        reauthenticate: async (header) => {
          const token = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
          const principal = token ? await tokens.authenticate(token) : null;
          if (principal?.role === 'property-manager') principal.sites = await deps.directory.managedSites(principal.actorId);
          return principal;
        },
      });
      await api.register(ixgRoutes, { ixg: deps.ixg });
    },
    { prefix: '/api/v1' },
  );
  return app;
}
