import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CallService } from '../../calls/service.js';
import { callOutcomes } from '../../calls/tables.js';
import { siteParams } from '../../directory/schemas.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

const callSchema = z.object({
  id: z.uuid(),
  callId: z.string().describe('SIP Call-ID'),
  caller: z.string().describe("caller's SIP number"),
  dialled: z.string().describe('what the caller dialled: an apartment number or a SIP number'),
  apartmentId: z.uuid().nullable(),
  answeredBy: z.string().nullable().describe('SIP number of the station that answered'),
  startedAt: z.string(),
  answeredAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  outcome: z.enum(callOutcomes),
  status: z.number().int().nullable().describe('SIP status that ended an unanswered or refused call'),
  reason: z.string().nullable(),
});

const doorEventSchema = z.object({
  id: z.uuid(),
  mac: z.string(),
  relay: z.number().int().describe('1-based relay index'),
  method: z.string().describe('how the door was released: dtmf, pin, card, …'),
  byStation: z.string().nullable().describe('SIP number of the station that released it during a call'),
  callId: z.string().nullable(),
  occurredAt: z.string(),
  receivedAt: z.string(),
});

export const callRoutes: FastifyPluginAsyncZod<{ calls: CallService }> = async (app, { calls }) => {
  const tags = ['calls'];
  app.get(
    '/sites/:siteId/calls',
    { schema: { tags, summary: "A site's calls, newest first (from Kamailio's reports)", params: siteParams, querystring: z.strictObject(pageQuery), response: { 200: pageOf(callSchema), ...errorResponses(400, 404) } } },
    async (request) => calls.listCalls(request.principal, request.params.siteId, request.query),
  );
  app.get(
    '/sites/:siteId/door-events',
    { schema: { tags, summary: "A site's door events (relays opened), newest first", params: siteParams, querystring: z.strictObject(pageQuery), response: { 200: pageOf(doorEventSchema), ...errorResponses(400, 404) } } },
    async (request) => calls.listDoorEvents(request.principal, request.params.siteId, request.query),
  );
};
