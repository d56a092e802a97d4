import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AccountService } from '../../accounts/service.js';
import { accountSchema, createInstallerBody, issuedTokenSchema } from '../../accounts/schemas.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { requireDistributor } from '../auth.js';
import { errorResponses } from '../errors.js';
import type { TokenCache } from '../token-cache.js';

export const accountRoutes: FastifyPluginAsyncZod<{ accounts: AccountService; tokens: TokenCache }> = async (app, { accounts, tokens }) => {
  app.post(
    '/installers',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Create an installer account (distributor only); answers its bearer token once',
        body: createInstallerBody,
        response: { 201: z.object({ installer: accountSchema, token: issuedTokenSchema }), ...errorResponses(400, 403, 409) },
      },
    },
    async (request, reply) => {
      requireDistributor(request);
      return reply.status(201).send(await accounts.createInstaller(request.principal, request.body));
    },
  );

  app.get(
    '/installers',
    { schema: { tags: ['accounts'], summary: 'List installers (distributor only)', querystring: z.strictObject(pageQuery), response: { 200: pageOf(accountSchema), ...errorResponses(400, 403) } } },
    async (request) => {
      requireDistributor(request);
      return accounts.listInstallers(request.query.page, request.query.pageSize);
    },
  );

  app.post(
    '/installers/:id/tokens',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Issue another bearer token for an installer (distributor only)',
        params: z.strictObject({ id: z.uuid() }),
        response: { 201: issuedTokenSchema, ...errorResponses(400, 403, 404) },
      },
    },
    async (request, reply) => {
      requireDistributor(request);
      const installer = await accounts.getInstaller(request.params.id);
      return reply.status(201).send(await accounts.issueToken(installer.id));
    },
  );

  app.get(
    '/tokens',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Your own tokens, newest first: when each was made and revoked, and which one this request uses (never the token itself: it is shown once, when made)',
        querystring: z.strictObject(pageQuery),
        response: { 200: pageOf(z.object({ id: z.uuid(), createdAt: z.string(), revokedAt: z.string().nullable(), current: z.boolean() })), ...errorResponses(400) },
      },
    },
    async (request) => accounts.listTokens(request.principal, request.query),
  );

  app.delete(
    '/tokens/:id',
    {
      schema: {
        tags: ['accounts'],
        summary: 'Revoke a token (an installer its own, a distributor any)',
        params: z.strictObject({ id: z.uuid() }),
        response: { 204: z.null(), ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      await accounts.revokeToken(request.principal, request.params.id);
      tokens.revoked(request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.get('/me', { schema: { tags: ['accounts'], summary: 'The account behind the token', response: { 200: accountSchema, ...errorResponses() } } }, async (request) => {
    const me = await accounts.getAccount(request.principal.actorId);
    return me!;
  });
};
