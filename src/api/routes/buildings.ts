import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { buildingParams, buildingSchema, createBuildingBody, patchBuildingBody, siteParams } from '../../directory/schemas.js';
import type { DirectoryService } from '../../directory/service.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const buildingRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService }> = async (app, { directory }) => {
  const tags = ['directory'];
  app.post(
    '/sites/:siteId/buildings',
    { schema: { tags, summary: 'Add a building to a site', params: siteParams, body: createBuildingBody, response: { 201: buildingSchema, ...errorResponses(400, 404, 409, 415) } } },
    async (request, reply) => reply.status(201).send(await directory.buildings.create(request.principal, request.params.siteId, request.body)),
  );
  app.get(
    '/sites/:siteId/buildings',
    { schema: { tags, summary: "A site's buildings", params: siteParams, querystring: z.strictObject(pageQuery), response: { 200: pageOf(buildingSchema), ...errorResponses(400, 404) } } },
    async (request) => directory.buildings.list(request.principal, request.params.siteId, request.query),
  );
  app.get('/buildings/:buildingId', { schema: { tags, summary: 'One building', params: buildingParams, response: { 200: buildingSchema, ...errorResponses(400, 404) } } }, async (request) =>
    directory.buildings.get(request.principal, request.params.buildingId),
  );
  app.patch(
    '/buildings/:buildingId',
    { schema: { tags, summary: 'Change a building', params: buildingParams, body: patchBuildingBody, response: { 200: buildingSchema, ...errorResponses(400, 404, 409, 415) } } },
    async (request) => directory.buildings.update(request.principal, request.params.buildingId, request.body),
  );
  app.delete(
    '/buildings/:buildingId',
    {
      schema: {
        tags,
        summary: 'Delete a building with its apartments and residents (409 while devices are placed in it or its apartments)',
        params: buildingParams,
        response: { 204: z.null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await directory.buildings.remove(request.principal, request.params.buildingId);
      return reply.status(204).send(null);
    },
  );
};
