import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { accountSchema, createInstallerBody, createPropertyManagerBody, issuedTokenSchema, propertyManagerSitesBody } from '../../accounts/schemas.js';
import type { AccountService } from '../../accounts/service.js';
import type { DirectoryService } from '../../directory/service.js';
import { errorResponses } from '../errors.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { singleLine } from '../../shared/text.js';

/** Accounts an installer makes to work for it: property managers (for some of its sites) and sub-installers. */
export const memberRoutes: FastifyPluginAsyncZod<{ accounts: AccountService; directory: DirectoryService }> = async (app, { accounts, directory }) => {
  const tags = ['accounts'];
  const created = z.object({ account: accountSchema, siteIds: z.array(z.uuid()).optional(), token: issuedTokenSchema });

  app.post(
    '/property-managers',
    {
      schema: {
        tags,
        summary: 'Create a property manager for some of your sites (installer only); answers its bearer token once',
        description: 'A property manager manages residents, their PIN codes and cards, and reads devices and jobs, in its sites only; it cannot add or remove devices, MACs or firmware.',
        body: createPropertyManagerBody,
        response: { 201: created, ...errorResponses(400, 403, 409) },
      },
    },
    async (request, reply) => {
      const { siteIds, ...account } = request.body;
      const result = await accounts.createMember(request.principal, 'property-manager', account, (tx, id) => directory.sites.assignManager(tx, request.principal, id, siteIds));
      return reply.status(201).send({ ...result, siteIds: [...new Set(siteIds)] });
    },
  );

  app.put(
    '/property-managers/:id/sites',
    {
      schema: {
        tags,
        summary: "Replace a property manager's sites (installer only)",
        params: z.strictObject({ id: z.uuid() }),
        body: propertyManagerSitesBody,
        response: { 200: z.object({ siteIds: z.array(z.uuid()) }), ...errorResponses(400, 403, 404) },
      },
    },
    async (request) => {
      const member = await accounts.getMember(request.principal, request.params.id, 'property-manager');
      await accounts.withinMember(request.principal, (tx) => directory.sites.assignManager(tx, request.principal, member.id, request.body.siteIds));
      return { siteIds: await directory.sites.managedBy(member.id) };
    },
  );

  const listQuery = z.strictObject({
    ...pageQuery,
    search: singleLine(128).optional().describe('part of the name or email'),
    installerId: z.uuid().optional().describe("a distributor names the installer whose accounts it lists"),
  });
  app.get(
    '/property-managers',
    {
      schema: {
        tags,
        summary: "Your property managers, by name, with their sites (installer and sub-installers; a distributor names the installer)",
        querystring: listQuery,
        response: { 200: pageOf(accountSchema.extend({ siteIds: z.array(z.uuid()) })), ...errorResponses(400, 403) },
      },
    },
    async (request) => {
      const page = await accounts.listMembers(request.principal, 'property-manager', request.query);
      const sites = await directory.sites.managedByMany(page.items.map((a) => a.id));
      return { ...page, items: page.items.map((a) => ({ ...a, siteIds: sites.get(a.id) ?? [] })) };
    },
  );
  app.get(
    '/sub-installers',
    { schema: { tags, summary: 'Your sub-installers, by name (installer and sub-installers; a distributor names the installer)', querystring: listQuery, response: { 200: pageOf(accountSchema), ...errorResponses(400, 403) } } },
    async (request) => accounts.listMembers(request.principal, 'sub-installer', request.query),
  );

  app.post(
    '/sub-installers',
    {
      schema: {
        tags,
        summary: 'Create a sub-installer, who works as you on your sites, devices and MACs but makes no accounts (installer only)',
        body: createInstallerBody,
        response: { 201: created, ...errorResponses(400, 403, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(await accounts.createMember(request.principal, 'sub-installer', request.body)),
  );
};
