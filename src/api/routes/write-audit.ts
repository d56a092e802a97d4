import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { listWritesQuery, writeSchema } from '../../audit/schemas.js';
import type { WriteAuditLog } from '../../audit/service.js';
import { pageOf } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const writeAuditRoutes: FastifyPluginAsyncZod<{ writes: WriteAuditLog }> = async (app, { writes }) => {
  app.get(
    '/audit/writes',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Every write to devices, the MAC library, the directory and accounts, newest first, with the account that made it',
        description: 'A distributor sees all, an installer the writes to its data (its sub-installers and property managers included), a property manager those in its sites. Job transitions are in `/audit`.',
        querystring: listWritesQuery,
        response: { 200: pageOf(writeSchema), ...errorResponses(400) },
      },
    },
    async (request) => writes.list(request.principal, request.query),
  );
};
