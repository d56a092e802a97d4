import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createSiteBody, listSitesQuery, patchSiteBody, siteParams, siteSchema } from '../../directory/schemas.js';
import type { WriteAuditLog } from '../../audit/service.js';
import { writeSchema } from '../../audit/schemas.js';
import type { DirectoryService } from '../../directory/service.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const siteRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService; writes: WriteAuditLog }> = async (app, { directory, writes }) => {
  const tags = ['directory'];
  app.post(
    '/sites',
    {
      schema: {
        tags,
        summary: 'Create a site (a community or an office); its time zone and modes reach every device placed in it',
        body: createSiteBody,
        response: { 201: siteSchema, ...errorResponses(400, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await directory.sites.create(request.principal, request.body)),
  );
  app.get(
    '/sites',
    { schema: { tags, summary: "List sites (an installer's own; a distributor's: all)", querystring: listSitesQuery, response: { 200: pageOf(siteSchema), ...errorResponses(400) } } },
    async (request) => directory.sites.list(request.principal, request.query),
  );
  app.get('/sites/:siteId', { schema: { tags, summary: 'One site', params: siteParams, response: { 200: siteSchema, ...errorResponses(400, 404) } } }, async (request) =>
    directory.sites.get(request.principal, request.params.siteId),
  );
  app.patch(
    '/sites/:siteId',
    {
      schema: {
        tags,
        summary: "Change a site; its devices are provisioned again where what they were given changes",
        description: 'Switching the PIN mode to `pin` fails with 409 `pin_taken` while two apartments share a PIN.',
        params: siteParams,
        body: patchSiteBody,
        response: { 200: siteSchema, ...errorResponses(400, 404, 409, 415) },
      },
    },
    async (request) => directory.sites.update(request.principal, request.params.siteId, request.body),
  );
  app.get(
    '/sites/:siteId/audit',
    {
      schema: {
        tags,
        summary: "Every write to the site's directory, newest first, with the account that made it",
        params: siteParams,
        querystring: z.strictObject(pageQuery),
        response: { 200: pageOf(writeSchema), ...errorResponses(400, 404) },
      },
    },
    async (request) => {
      await directory.sites.readable(request.principal, request.params.siteId);
      return writes.list(request.principal, { ...request.query, siteId: request.params.siteId });
    },
  );
  app.delete(
    '/sites/:siteId',
    {
      schema: {
        tags,
        summary: 'Delete a site with its buildings, apartments, residents and credentials (409 while devices are placed in it)',
        params: siteParams,
        response: { 204: z.null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await directory.sites.remove(request.principal, request.params.siteId);
      return reply.status(204).send(null);
    },
  );
};
