import type { CallService } from '../../calls/service.js';
import type { Redis } from 'ioredis';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isInvalidCode, type AppStations } from '../../calls/app-stations.js';
import type { AppStatus } from '../../calls/app-status.js';
import { appLicencesBody, appLicencesChangeSchema, appLicencesSchema, appRegistrationSchema, appStationParams, appStationSchema, exchangeBody, exchangeSchema, registrationCodeParams } from '../../calls/schemas.js';
import { AuthFailureLimiter } from '../../device-gateway/auth-limiter.js';
import { apartmentParams, siteParams } from '../../directory/schemas.js';
import type { Logger } from '../../logger.js';
import { basicCredentials } from '../auth.js';
import { errorResponses, errorSchema, HttpError } from '../errors.js';

const tags = ['app stations'];

/** Licences, registration codes and app stations, for the installer (and a property manager in its sites). */
export const appStationRoutes: FastifyPluginAsyncZod<{ appStations: AppStations; calls: CallService; appStatus: AppStatus }> = async (app, { appStations, calls, appStatus }) => {
  app.get(
    '/sites/:siteId/app-status',
    {
      schema: {
        tags,
        summary: 'Status of Apps: units with apps, apps and active apps (SIP account registered now), and a daily series',
        description: "Each day of the series (in the site's time zone, oldest first) holds the most units with apps and active apps seen that day; today includes what is read now.",
        params: siteParams,
        querystring: z.strictObject({ days: z.coerce.number().int().min(1).max(366).default(30).describe('days of the series, today included') }),
        response: {
          200: z.object({
            unitsWithApps: z.number().int(),
            apps: z.number().int(),
            activeApps: z.number().int(),
            daily: z.array(z.object({ day: z.string(), unitsWithApps: z.number().int(), activeApps: z.number().int() })),
          }),
          ...errorResponses(400, 404),
        },
      },
    },
    async (request) => appStatus.status(request.principal, request.params.siteId, request.query.days),
  );

  app.put(
    '/sites/:siteId/app-licences',
    {
      schema: {
        tags,
        summary: "Set the site's mobile app licences: how many units (apartments) may have apps (1 licence: 1 unit, up to 8 apps)",
        description:
          'The new total, not the number added. To take units out that have apps, name their apartments in `release`: their app stations are removed ' +
          '(their SIP accounts fail at once) and their registration codes revoked, in the same transaction. Lowering the count below the units that still have apps ' +
          'fails with 409 `licence_in_use`; an apartment in `release` that is not of the site fails with 400 `apartment_not_found`. ' +
          "Other apartments' codes stay: redeeming one checks for a free unit again (403 `licence_exhausted`).",
        params: siteParams,
        body: appLicencesBody,
        response: { 200: appLicencesChangeSchema, ...errorResponses(400, 404, 409, 415) },
      },
    },
    async (request) => appStations.setLicences(request.principal, request.params.siteId, request.body),
  );
  app.get(
    '/sites/:siteId/app-licences',
    { schema: { tags, summary: "The site's mobile app licences and how many units use them", params: siteParams, response: { 200: appLicencesSchema, ...errorResponses(400, 404) } } },
    async (request) => appStations.licences(request.principal, request.params.siteId),
  );
  app.post(
    '/apartments/:apartmentId/app-registrations',
    {
      schema: {
        tags,
        summary: 'Make a one-time app registration code (and its QR code) for an apartment, valid 24 h',
        description:
          'The resident scans the QR code with the app, which redeems the code at `registrationUrl`. The code is shown only in this answer. ' +
          'Refused with 409 `apartment_full` when the apartment has 8 apps, and with 403 `licence_exhausted` when it has none yet and every licence of the site is in use.',
        params: apartmentParams,
        response: { 201: appRegistrationSchema, ...errorResponses(400, 403, 404, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(await appStations.createRegistration(request.principal, request.params.apartmentId)),
  );
  app.get(
    '/apartments/:apartmentId/app-stations',
    {
      schema: {
        tags,
        summary: "An apartment's app stations, with their SIP registration",
        params: apartmentParams,
        response: {
          200: z.object({
            items: z.array(appStationSchema.extend({ sipStatus: z.enum(['registered', 'unregistered']), sipLastRegisteredAt: z.string().nullable().describe('when it last registered') })),
          }),
          ...errorResponses(400, 404),
        },
      },
    },
    async (request) => {
      return { items: await calls.withSipState(await appStations.list(request.principal, request.params.apartmentId)) };
    },
  );
  app.delete(
    '/app-stations/:appStationId',
    {
      schema: {
        tags,
        summary: "Remove an app station: its SIP account stops working at once, and the apartment's slot is free again",
        params: appStationParams,
        response: { 204: z.null(), ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      await appStations.remove(request.principal, request.params.appStationId);
      return reply.status(204).send(null);
    },
  );
};

export interface AppRegistrationDeps {
  appStations: AppStations;
  /** With it, failed attempts are counted across the deployment's API processes; without, in this process. */
  shared?: { redis: Redis; prefix: string };
  log?: Logger;
  /** Failed redemptions from one address in a minute before it is refused (429) for the rest of it. */
  failuresPerMinute?: number;
}

/** All failures of an address count together, whatever code they tried. */
const ANY_CODE = 'code';

/**
 * Where an app redeems its registration code: no bearer token (the code is the credential), so this plugin
 * is registered outside the authenticated API. Failed attempts are limited per source address.
 */
export const appRegistrationRoutes: FastifyPluginAsyncZod<AppRegistrationDeps> = async (app, deps) => {
  const limiter = new AuthFailureLimiter(deps.failuresPerMinute ?? 10, {
    ...(deps.shared && { shared: { redis: deps.shared.redis, prefix: `${deps.shared.prefix}:app-registrations` } }),
    log: deps.log,
  });
  app.addHook('onClose', async () => limiter.close());
  await limiter.start();

  app.post(
    '/app-registrations/:code',
    {
      // The URL holds the code: requests here are not logged at info level.
      logLevel: 'warn',
      schema: {
        tags,
        summary: 'Redeem a registration code (app; no token): a new app station with its SIP account and address book',
        description:
          'The code is used once, within 24 h. An unknown, used or expired code answers 404 `registration_code_invalid`; after 10 failures in a minute from one address, ' +
          'that address is answered 429 `too_many_attempts` for the rest of the minute. The apartment may be full (409 `apartment_full`) or out of licences (403 `licence_exhausted`) by now. ' +
          'The SIP password is shown only in this answer.',
        params: registrationCodeParams,
        body: exchangeBody,
        security: [],
        response: { 201: exchangeSchema, 400: errorSchema, 403: errorSchema, 404: errorSchema, 409: errorSchema, 415: errorSchema, 429: errorSchema, 500: errorSchema },
      },
    },
    async (request, reply) => {
      const address = request.ip;
      if (limiter.isBlocked(address, ANY_CODE)) {
        reply.header('retry-after', '60');
        throw new HttpError(429, 'too_many_attempts', 'too many failed registration attempts from this address; try again in a minute');
      }
      try {
        return reply.status(201).send(await deps.appStations.exchange(request.params.code, request.body));
      } catch (err) {
        if (isInvalidCode(err) && limiter.recordFailure(address, ANY_CODE)) {
          deps.log?.warn({ ip: address }, 'too many failed app registration attempts from this address; refused for the rest of the minute');
        }
        throw err;
      }
    },
  );

  // An app's own requests: HTTP Basic with the SIP username and password its registration gave it.
  const appBasic = async (request: FastifyRequest, reply: FastifyReply) => {
    const address = request.ip;
    if (limiter.isBlocked(address, ANY_CODE)) {
      reply.header('retry-after', '60');
      throw new HttpError(429, 'too_many_attempts', 'too many failed attempts from this address; try again in a minute');
    }
    const credentials = basicCredentials(request.headers.authorization);
    const station = credentials ? await deps.appStations.authenticate(credentials.user, credentials.password) : null;
    if (!station) {
      limiter.recordFailure(address, ANY_CODE);
      reply.header('www-authenticate', 'Basic realm="app stations"');
      throw new HttpError(401, 'unauthorized', "an app station's SIP username and password (HTTP Basic)");
    }
    request.appStation = station;
  };
  app.get(
    '/app/address-book',
    {
      logLevel: 'warn',
      onRequest: appBasic,
      schema: {
        tags,
        summary: "The calling app station's address book, as it is now (app; HTTP Basic with its SIP username and password)",
        description: 'What the registration answered, re-read: after the directory or an IXG upload changed it, an app refreshes it here. 401 for anyone but an app station; failures count toward the same per-address limit as registrations.',
        security: [{ appBasic: [] }],
        response: { 200: z.object({ sipNumber: z.string(), addressBook: exchangeSchema.shape.addressBook }), 401: errorSchema, 429: errorSchema },
      },
    },
    async (request) => ({ sipNumber: request.appStation!, addressBook: (await deps.appStations.addressBook(request.appStation!)) ?? [] }),
  );
};

declare module 'fastify' {
  interface FastifyRequest {
    /** The SIP number of the app station that authenticated (app routes only). */
    appStation?: string;
  }
}
