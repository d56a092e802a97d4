import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CallService } from '../../calls/service.js';
import { callOutcomes, doorOutcomes, doorRequesters } from '../../calls/tables.js';
import { apartmentParams, siteParams } from '../../directory/schemas.js';
import { macInput } from '../../mac-library/mac.js';
import { macParams } from '../../mac-library/schemas.js';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

const callSchema = z.object({
  id: z.uuid(),
  callId: z.string().describe('SIP Call-ID'),
  caller: z.string().describe("caller's SIP number"),
  callerName: z.string().nullable().describe("the calling device's or app station's name"),
  dialled: z.string().describe('what the caller dialled: an apartment number or a SIP number'),
  apartmentId: z.uuid().nullable(),
  apartment: z.object({ id: z.uuid(), number: z.string(), name: z.string().nullable(), building: z.string().nullable() }).nullable(),
  answeredBy: z.string().nullable().describe('SIP number of the station that answered'),
  answeredByName: z.string().nullable(),
  startedAt: z.string(),
  answeredAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  outcome: z.enum(callOutcomes),
  status: z.number().int().nullable().describe('SIP status that ended an unanswered or refused call'),
  reason: z.string().nullable(),
  ixgStation: z.string().nullable().describe('a call an IXG gateway placed: the IXG station it placed it for'),
});

const verifiedFlag = (what: string) => z.boolean().nullable().describe(`${what}; false: not confirmed; null: not reported (nothing to check)`);

const doorEventSchema = z.object({
  id: z.uuid(),
  mac: z.string(),
  relay: z.number().int().describe('1-based relay index'),
  method: z.string().describe('how the door was released: dtmf, pin, card, …'),
  byStation: z.string().nullable().describe('SIP number of the station that released it during a call, as the device reported it (see verified.by)'),
  floors: z.array(z.string()).nullable().describe('the lift floors the PIN or card enabled, as the device reported them (`["all"]`: every floor); null: not reported'),
  callId: z.string().nullable().describe('SIP Call-ID of that call, as the device reported it (see verified.call)'),
  ixgStation: z.string().nullable().describe("an IXG gateway's report: the IXG station whose door it released (verified.call: the gateway's call for that station)"),
  occurredAt: z.string().describe("when it happened: the device's time, clamped to [receivedAt − 5 min, receivedAt]; receivedAt when it sent none"),
  reportedAt: z.string().nullable().describe('the time the device reported, unclamped (null: none)'),
  receivedAt: z.string().describe('when the cloud received the event'),
  verified: z
    .object({
      relay: z.boolean().describe('true: a relay the device is configured with (events for others are refused, so false only on events recorded before the check)'),
      call: verifiedFlag('true: callId is a call the SIP server recorded, answered, with this device as a party, around occurredAt'),
      by: verifiedFlag("true: byStation is that call's other party"),
      at: verifiedFlag("true: the device's time was within 5 min of the receipt (occurredAt is the device's time, or the receipt if it was slightly ahead)"),
    })
    .describe('which fields the cloud checked against what it knows; for method dtmf, call and by are required: missing is false'),
  outcome: z.enum(doorOutcomes).describe("opened (reported by the device); for an opening asked through the cloud (method remote): pending until its job ends, then opened, failed, expired or canceled; refused at once (reason); not-opened: a call answered without the door opened (when the site logs them)"),
  reason: z.string().nullable().describe('why it was refused or failed (an error code)'),
  jobId: z.uuid().nullable().describe('the open-door job of a remote opening'),
  requestedBy: z.object({ kind: z.enum(doorRequesters), id: z.string().describe("the account's id, or the app station's SIP number") }).nullable().describe('who asked the cloud to open'),
  apartmentId: z.uuid().nullable().describe("the apartment the opening is of: the app's or station's that opened it, or the device's"),
});

const doorLogEntrySchema = doorEventSchema.extend({
  deviceName: z.string().nullable(),
  relayName: z.string().nullable().describe('the relay as the device is configured: RELAY.Name{n}'),
  apartment: z.object({ id: z.uuid(), number: z.string(), name: z.string().nullable(), building: z.string().nullable() }).nullable(),
});

export const callRoutes: FastifyPluginAsyncZod<{ calls: CallService }> = async (app, { calls }) => {
  const tags = ['calls'];
  app.get(
    '/sites/:siteId/calls',
    {
      schema: {
        tags,
        summary: "A site's calls, newest first (from Kamailio's reports), with the stations' and apartment's names",
        params: siteParams,
        querystring: z.strictObject({
          ...pageQuery,
          station: z.string().regex(/^[0-9]{10}$/).optional().describe('a SIP number that called or answered'),
          apartmentId: z.uuid().optional(),
          outcome: z.enum(callOutcomes).optional(),
          from: z.iso.datetime({ offset: true }).optional().describe('startedAt from (inclusive)'),
          to: z.iso.datetime({ offset: true }).optional().describe('startedAt before (exclusive)'),
        }),
        response: { 200: pageOf(callSchema), ...errorResponses(400, 404) },
      },
    },
    async (request) => calls.listCalls(request.principal, request.params.siteId, { ...request.query, from: request.query.from ? new Date(request.query.from) : undefined, to: request.query.to ? new Date(request.query.to) : undefined }),
  );
  const doorLogQuery = z.strictObject({
    ...pageQuery,
    mac: macInput.optional().describe('one device'),
    apartmentId: z.uuid().optional().describe('one apartment (whose app or station opened, or the device of)'),
    relay: z.coerce.number().int().min(0).max(8).optional(),
    method: z.enum(['dtmf', 'pin', 'card', 'face', 'bluetooth', 'nfc', 'button', 'remote', 'call']).optional(),
    outcome: z.enum(doorOutcomes).optional(),
    from: z.iso.datetime({ offset: true }).optional().describe('occurredAt from (inclusive)'),
    to: z.iso.datetime({ offset: true }).optional().describe('occurredAt before (exclusive)'),
  });
  const filter = (q: z.infer<typeof doorLogQuery>) => ({ ...q, from: q.from ? new Date(q.from) : undefined, to: q.to ? new Date(q.to) : undefined });
  const doorLog = (summary: string) => ({ tags, summary, querystring: doorLogQuery, response: { 200: pageOf(doorLogEntrySchema), ...errorResponses(400, 404) } });
  app.get(
    '/sites/:siteId/door-events',
    { schema: { ...doorLog("A site's door log, newest first: doors opened, openings asked through the cloud (refused ones too), calls answered without opening; with names and what the cloud verified"), params: siteParams } },
    async (request) => calls.listDoorLog(request.principal, { siteId: request.params.siteId }, filter(request.query)),
  );
  app.get(
    '/devices/:mac/door-events',
    { schema: { ...doorLog("A device's door log, newest first (the same filters and fields as the site's)"), params: macParams } },
    async (request) => calls.listDoorLog(request.principal, { mac: request.params.mac }, filter(request.query)),
  );
  app.get(
    '/apartments/:apartmentId/door-events',
    { schema: { ...doorLog("An apartment's door log, newest first: what its apps and stations opened, and its own door phone's events"), params: apartmentParams } },
    async (request) => calls.listDoorLog(request.principal, { apartmentId: request.params.apartmentId }, filter(request.query)),
  );
};
