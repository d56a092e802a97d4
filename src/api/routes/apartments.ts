import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { apartmentParams, apartmentSchema, buildingParams, createApartmentBody, patchApartmentBody } from '../../directory/schemas.js';
import type { DirectoryService } from '../../directory/service.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const apartmentRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService }> = async (app, { directory }) => {
  const tags = ['directory'];
  app.post(
    '/buildings/:buildingId/apartments',
    {
      schema: {
        tags,
        summary: 'Add an apartment to a building',
        description: 'Its number is what visitors dial: 1–6 digits, `#` allowed but not first, unique in its building.',
        params: buildingParams,
        body: createApartmentBody,
        response: { 201: apartmentSchema, ...errorResponses(400, 404, 409, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await directory.apartments.create(request.principal, request.params.buildingId, request.body)),
  );
  app.get(
    '/buildings/:buildingId/apartments',
    { schema: { tags, summary: "A building's apartments", params: buildingParams, querystring: z.strictObject(pageQuery), response: { 200: pageOf(apartmentSchema), ...errorResponses(400, 404) } } },
    async (request) => directory.apartments.list(request.principal, request.params.buildingId, request.query),
  );
  app.get('/apartments/:apartmentId', { schema: { tags, summary: 'One apartment', params: apartmentParams, response: { 200: apartmentSchema, ...errorResponses(400, 404) } } }, async (request) =>
    directory.apartments.get(request.principal, request.params.apartmentId),
  );
  app.patch(
    '/apartments/:apartmentId',
    { schema: { tags, summary: 'Change an apartment', params: apartmentParams, body: patchApartmentBody, response: { 200: apartmentSchema, ...errorResponses(400, 404, 409, 415) } } },
    async (request) => directory.apartments.update(request.principal, request.params.apartmentId, request.body),
  );
  app.delete(
    '/apartments/:apartmentId',
    { schema: { tags, summary: 'Delete an apartment with its residents, app stations and registration codes (409 while devices are placed in it)', params: apartmentParams, response: { 204: z.null(), ...errorResponses(400, 404, 409) } } },
    async (request, reply) => {
      await directory.apartments.remove(request.principal, request.params.apartmentId);
      return reply.status(204).send(null);
    },
  );
  app.post(
    '/apartments/:apartmentId/reset',
    {
      schema: {
        tags,
        summary: 'Reset an apartment for new tenants: its residents, their PIN codes and cards, its app stations and its registration codes are removed; the apartment and its devices stay',
        description:
          'Everything the old tenants had goes in one transaction: their PINs and cards leave the devices once each applied its new list; ' +
          'the app stations lose their SIP accounts at once (a REGISTER or call with them is refused) and their address book; a registration code not yet redeemed no longer redeems (404).',
        params: apartmentParams,
        response: {
          200: z.object({
            residentsRemoved: z.number().int(),
            credentialsRemoved: z.number().int().describe('PIN codes and cards'),
            appStationsRemoved: z.number().int().describe("the apartment's app stations (residents' apps), whose SIP accounts stopped working"),
            codesRevoked: z.number().int().describe('app registration codes that were not redeemed yet and had not expired'),
          }),
          ...errorResponses(400, 404),
        },
      },
    },
    async (request) => directory.apartments.reset(request.principal, request.params.apartmentId),
  );
};
