import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { apartmentParams, createResidentBody, patchResidentBody, residentParams, residentSchema, siteParams } from '../../directory/schemas.js';
import { singleLine } from '../../shared/text.js';
import type { DirectoryService } from '../../directory/service.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const residentRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService }> = async (app, { directory }) => {
  const tags = ['directory'];
  app.post(
    '/apartments/:apartmentId/residents',
    {
      schema: {
        tags,
        summary: 'Add a resident: the main resident first, then family members',
        params: apartmentParams,
        body: createResidentBody,
        response: { 201: residentSchema, ...errorResponses(400, 404, 409, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await directory.residents.create(request.principal, request.params.apartmentId, request.body)),
  );
  app.get(
    '/sites/:siteId/residents',
    {
      schema: {
        tags,
        summary: "A site's residents (the portal's Residents page): by building, apartment and name, searched by name, email or phone, or by apartment number",
        params: siteParams,
        querystring: z.strictObject({
          ...pageQuery,
          search: singleLine(128, 1).optional().describe('part of a name ("Lily Blue" or "Blue Lily"), of the email, or the digits of a phone number (mobile or landline, at least 3)'),
          apartment: z.string().max(12).optional().describe('an apartment number, exactly'),
        }),
        response: { 200: pageOf(residentSchema.extend({ apartment: z.object({ number: z.string(), building: z.string() }) })), ...errorResponses(400, 404) },
      },
    },
    async (request) => directory.residents.listSite(request.principal, request.params.siteId, request.query),
  );
  app.get(
    '/apartments/:apartmentId/residents',
    { schema: { tags, summary: "An apartment's residents, the main resident first", params: apartmentParams, querystring: z.strictObject(pageQuery), response: { 200: pageOf(residentSchema), ...errorResponses(400, 404) } } },
    async (request) => directory.residents.list(request.principal, request.params.apartmentId, request.query),
  );
  app.get('/residents/:residentId', { schema: { tags, summary: 'One resident', params: residentParams, response: { 200: residentSchema, ...errorResponses(400, 404) } } }, async (request) =>
    directory.residents.get(request.principal, request.params.residentId),
  );
  app.patch(
    '/residents/:residentId',
    { schema: { tags, summary: 'Change a resident', params: residentParams, body: patchResidentBody, response: { 200: residentSchema, ...errorResponses(400, 404, 415) } } },
    async (request) => directory.residents.update(request.principal, request.params.residentId, request.body),
  );
  app.delete(
    '/residents/:residentId',
    {
      schema: {
        tags,
        summary: 'Remove a resident with their PIN codes and cards (the main resident after the family members)',
        description:
          "App stations belong to the apartment, not to a resident (a code registers an app to the apartment): they stay. When the apartment's tenants leave, " +
          'reset the apartment (`POST /apartments/{apartmentId}/reset`), which removes its app stations and codes too, or remove the station.',
        params: residentParams,
        response: { 204: z.null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await directory.residents.remove(request.principal, request.params.residentId);
      return reply.status(204).send(null);
    },
  );
};
