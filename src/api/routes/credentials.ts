import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createCredentialBody, credentialParams, credentialSchema, residentParams } from '../../directory/schemas.js';
import type { DirectoryService } from '../../directory/service.js';
import { errorResponses } from '../errors.js';

export const credentialRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService }> = async (app, { directory }) => {
  const tags = ['directory'];
  app.post(
    '/residents/:residentId/credentials',
    {
      schema: {
        tags,
        summary: "Give a resident a PIN code or an RF card; the door phones and access terminals serving the resident's apartment get it",
        description:
          "A PIN is 4–8 digits, unique in the site (PIN mode `pin`) or in the apartment (`apt-pin`); a card number 4–20 hexadecimal digits, unique in the site. Optional validity window.",
        params: residentParams,
        body: createCredentialBody,
        response: { 201: credentialSchema, ...errorResponses(400, 404, 409, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await directory.credentials.create(request.principal, request.params.residentId, request.body)),
  );
  app.get(
    '/residents/:residentId/credentials',
    { schema: { tags, summary: "A resident's PIN codes and cards", params: residentParams, response: { 200: z.object({ items: z.array(credentialSchema) }), ...errorResponses(400, 404) } } },
    async (request) => ({ items: await directory.credentials.list(request.principal, request.params.residentId) }),
  );
  app.delete(
    '/credentials/:credentialId',
    {
      schema: {
        tags,
        summary: 'Revoke a PIN code or card: it leaves the lists of the devices that accepted it (their provisioning jobs show which have applied it)',
        params: credentialParams,
        response: { 204: z.null(), ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      await directory.credentials.remove(request.principal, request.params.credentialId);
      return reply.status(204).send(null);
    },
  );
};
