import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createUpgradeBody, deleteUpgradeQuery, listUpgradesQuery, patchUpgradeBody, upgradeDetailSchema, upgradeParams, upgradeSchema } from '../../firmware/schemas.js';
import type { UpgradeService } from '../../firmware/upgrades.js';
import { pageOf } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';
import { idempotencyHeaders, requestContext, sendSubmitted } from '../idempotency.js';

const tags = ['firmware upgrades'];

export const upgradeRoutes: FastifyPluginAsyncZod<{ upgrades: UpgradeService }> = async (app, { upgrades }) => {
  app.post(
    '/upgrades',
    {
      schema: {
        tags,
        summary: "Upgrade devices of the firmware's model to it, now or at a time",
        description:
          'Every MAC must be your device of the firmware\'s model (400 `invalid_devices` names the others). Devices already on the version are listed in `skipped`. ' +
          '`at` absent starts now; a future instant schedules the upgrade (it survives restarts). Offline devices start when they come back, until `expiresInSeconds` after the start.',
        headers: idempotencyHeaders,
        body: createUpgradeBody,
        response: { 201: upgradeDetailSchema, ...errorResponses(400, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 201, await upgrades.create(requestContext(request), request.body)),
  );

  app.get(
    '/upgrades',
    {
      schema: {
        tags,
        summary: 'The upgrade list: version, model, devices, status (pending, processing, executed), upgrade time, created time',
        querystring: listUpgradesQuery,
        response: { 200: pageOf(upgradeSchema), ...errorResponses(400) },
      },
    },
    async (request) => upgrades.list(request.principal, request.query),
  );

  app.get(
    '/upgrades/:id',
    {
      schema: {
        tags,
        summary: 'One upgrade with each device: pending, downloading (percent), installing, rebooting, succeeded, failed (reason), canceled',
        params: upgradeParams,
        response: { 200: upgradeDetailSchema, ...errorResponses(400, 404) },
      },
    },
    async (request) => upgrades.get(request.principal, request.params.id),
  );

  app.patch(
    '/upgrades/:id',
    {
      schema: {
        tags,
        summary: 'Change the time, devices or reset flag of a pending upgrade (409 once started)',
        params: upgradeParams,
        headers: idempotencyHeaders,
        body: patchUpgradeBody,
        response: { 200: upgradeDetailSchema, ...errorResponses(400, 404, 409, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 200, await upgrades.patch(requestContext(request), request.params.id, request.body)),
  );

  app.delete(
    '/upgrades/:id',
    {
      schema: {
        tags,
        summary: 'Cancel a pending upgrade or delete a finished record; 409 while in progress unless ?force=true',
        description: 'With `force=true` an upgrade in progress keeps its record: devices that have not started are canceled (200 with the upgrade), the others finish.',
        params: upgradeParams,
        querystring: deleteUpgradeQuery,
        response: { 200: upgradeDetailSchema, 204: z.null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      const forced = await upgrades.remove(request.principal, request.params.id, request.query.force);
      return forced ? reply.status(200).send(forced) : reply.status(204).send(null);
    },
  );
};
