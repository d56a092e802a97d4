import { timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CallService } from '../../calls/service.js';
import { errorResponses, HttpError } from '../errors.js';

/**
 * Kamailio's back end (src/calls/kamailio.cfg): the service is the one source of truth for accounts and
 * routes, and records registrations and call progress. Kamailio presents a bearer token; the routes are
 * not logged (a REGISTER per station every few minutes) and no answer carries a password.
 */
export const sipBackendRoutes: FastifyPluginAsyncZod<{ calls: CallService; token: string }> = async (app, { calls, token }) => {
  const expected = Buffer.from(`Bearer ${token}`);
  app.addHook('onRequest', async (request) => {
    const got = Buffer.from(request.headers.authorization ?? '');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) throw new HttpError(401, 'unauthorized', 'the SIP back end needs its token');
  });
  // Kamailio posts form fields (http_client_query); they are validated like any other body.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  const tags = ['sip back end'];
  const text = z.string().describe('plain text');
  const number = z.string().regex(/^[0-9]{1,32}$/);
  const common = { logLevel: 'warn' as const };

  app.get(
    '/credentials',
    {
      ...common,
      schema: { tags, summary: "An account's HA1 for the SIP realm (404: no such account)", querystring: z.strictObject({ username: z.string().max(64) }), response: { 200: text, ...errorResponses(400, 404) } },
    },
    async (request, reply) => {
      const ha1 = await calls.credentials(request.query.username);
      if (!ha1) throw new HttpError(404, 'not_found', 'no such SIP account');
      return reply.type('text/plain').send(ha1);
    },
  );

  app.post(
    '/registered',
    {
      ...common,
      schema: {
        tags,
        summary: 'Kamailio saved or removed a registration',
        body: z.object({
          number,
          expires: z.coerce.number().int().min(0).describe('absolute expiry (Unix seconds); 0: no contact left'),
          transport: z.string().max(8).optional(),
          source: z.string().max(64).optional(),
          userAgent: z.string().max(256).optional(),
          at: z.string().regex(/^[0-9]{1,12}\.[0-9]{1,6}$/).describe('when Kamailio handled the REGISTER: Unix seconds.microseconds'),
        }),
        response: { 204: z.null(), ...errorResponses(400) },
      },
    },
    async (request, reply) => {
      const b = request.body;
      await calls.registered({ number: b.number, expiresAt: b.expires > 0 ? new Date(b.expires * 1000) : null, transport: b.transport?.toLowerCase() ?? null, source: b.source ?? null, userAgent: b.userAgent ?? null, reportedAt: b.at });
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/route',
    {
      ...common,
      schema: {
        tags,
        summary: 'What a dialled number reaches from this caller, as a plan line: `refuse <code> <reason>` or `ring <step s> <steps>`',
        body: z.object({
          caller: number,
          callee: z.string().min(1).max(64),
          callId: z.string().min(1).max(256),
          // An IXG gateway's headers, checked by the routing (a malformed one is its SIP refusal, not a 503).
          station: z.string().max(64).optional().describe('X-IXG-Station: the IXG station a gateway places the call for'),
          building: z.string().max(64).optional().describe('X-IXG-Building: the building of the dialled unit'),
        }),
        response: { 200: text, ...errorResponses(400) },
      },
    },
    async (request, reply) => {
      const { station, building } = request.body;
      const { line } = await calls.route(request.body.caller, request.body.callee, request.body.callId, { station, building });
      return reply.type('text/plain').send(line);
    },
  );

  app.post(
    '/call',
    {
      ...common,
      schema: {
        tags,
        summary: "A call's progress: answered, ended or failed",
        body: z.object({
          event: z.enum(['answered', 'ended', 'failed']),
          callId: z.string().min(1).max(256),
          by: z.string().max(64).optional(),
          status: z.coerce.number().int().min(100).max(699).optional(),
        }),
        response: { 204: z.null(), ...errorResponses(400) },
      },
    },
    async (request, reply) => {
      await calls.callEvent(request.body);
      return reply.status(204).send(null);
    },
  );
};
