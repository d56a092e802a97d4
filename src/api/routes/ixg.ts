import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { CallService } from '../../calls/service.js';
import { z } from 'zod';
import type { DeviceKeys } from '../../devices/device-key.js';
import { siteParams } from '../../directory/schemas.js';
import { ixgSiteDocument } from '../../ixg/schemas.js';
import type { IxgSites } from '../../ixg/service.js';
import { normalizeMac } from '../../mac-library/mac.js';
import { macParams } from '../../mac-library/schemas.js';
import { authenticateDevice } from '../device-auth.js';
import { errorResponses, errorSchema } from '../errors.js';

/** 10,000 units with their stations and apps fit; anything larger is no IXG system. */
const UPLOAD_BODY_LIMIT = 8 * 1024 * 1024;

const counts = z.object({ added: z.number().int(), removed: z.number().int(), changed: z.number().int() });
const uploadAnswer = z.object({
  siteId: z.uuid(),
  version: z.number().int().describe('the upload number of the site, 1 for the first'),
  unchanged: z.boolean().describe('true: the same settings as the last upload; nothing was written'),
  counts: z.object({ gateways: counts, buildings: counts, units: counts, stations: counts, apps: counts }),
  appStationsRemoved: z.number().int().describe('app stations whose app listing is gone from their unit: their SIP accounts stopped working'),
});

/** An IXGW-(T)GW gateway uploads its IXG system's settings with its device credentials (docs/device-protocol.md). */
export const ixgUploadRoutes: FastifyPluginAsyncZod<{ ixg: IxgSites; calls: Pick<CallService, 'ixgDoorRelease'>; keys: DeviceKeys }> = async (app, { ixg, calls, keys }) => {
  // The device is known before its body is read or parsed: a stranger's request is 401, never a parse.
  const deviceAuth = async (request: FastifyRequest, reply: FastifyReply) => void authenticateDevice(request, reply, keys, normalizeMac((request.params as { mac?: string }).mac ?? ''));
  app.put(
    '/ixg/:mac/site',
    {
      bodyLimit: UPLOAD_BODY_LIMIT,
      schema: {
        tags: ['devices (device-facing)'],
        summary: "An IXGW-(T)GW gateway uploads its IXG system's settings (Basic auth: MAC, device key); the site it is placed in mirrors them",
        description:
          'Format 1 (docs/device-protocol.md, "IXG sites"): the site, its gateways, buildings with their units, each unit\'s stations and app listings with their address books and door release. Station and app numbers are unique in the system; an address book names only stations of the upload. At most 10,000 units, 20,000 stations and apps, 8 apps per unit, 8 MiB. The same settings again answer `unchanged` and write nothing.',
        params: macParams,
        body: ixgSiteDocument,
        security: [{ deviceBasic: [] }],
        response: { 200: uploadAnswer, 400: errorSchema, 401: errorSchema, 403: errorSchema, 409: errorSchema, 413: errorSchema },
      },
      onRequest: deviceAuth,
    },
    async (request) => ixg.upload(request.params.mac, request.body),
  );

  app.post(
    '/ixg/:mac/door-release',
    {
      bodyLimit: 4096,
      schema: {
        tags: ['devices (device-facing)'],
        summary: "An IXGW-(T)GW gateway asks whether the app that answered its call may release the calling station's door (Basic auth: MAC, device key)",
        description:
          'Asked when an app sends the door-release tone in a call the gateway placed for an IXG station (docs/device-protocol.md, "IXG calls"). 200: the app that answered (`by`) has door release for that station in its app listing; release the door, then report `door-opened` with `station`. 403 `door_release_not_allowed`: not this gateway\'s call, not placed for that station, not up, or no door release for that app.',
        params: macParams,
        body: z.strictObject({ callId: z.string().min(1).max(256).describe('the SIP Call-ID of the call'), station: z.string().regex(/^[0-9]{1,8}$/).describe('the IXG station the call was placed for') }),
        security: [{ deviceBasic: [] }],
        response: {
          200: z.object({ allowed: z.literal(true), callId: z.string(), station: z.string(), by: z.string().describe('SIP number of the app that answered'), app: z.string().describe('its app listing in the IXG settings') }),
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
        },
      },
      onRequest: deviceAuth,
    },
    async (request) => calls.ixgDoorRelease(request.params.mac, request.body),
  );
};

const viewSchema = z.object({
  siteId: z.uuid(),
  gatewayMac: z.string().describe('the gateway that made the last upload'),
  version: z.number().int(),
  uploadedAt: z.string(),
  settings: z.record(z.string(), z.unknown()).describe('the settings as uploaded (format 1: site, gateways, buildings with units, their stations and apps)'),
});

export const ixgRoutes: FastifyPluginAsyncZod<{ ixg: IxgSites }> = async (app, { ixg }) => {
  app.get(
    '/sites/:siteId/ixg',
    {
      schema: {
        tags: ['directory'],
        summary: "An IXG site's settings as its IXGW-(T)GW gateway last uploaded them (read-only: they change in the IXG Support Tool)",
        params: siteParams,
        response: { 200: viewSchema, ...errorResponses(400, 404) },
      },
    },
    async (request) => ixg.view(request.principal, request.params.siteId),
  );
};

