import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { eventTypes } from '../../events/outbox.js';
import type { Principal } from '../../accounts/service.js';
import type { EventStreams } from '../../events/stream.js';
import { errorResponses, HttpError } from '../errors.js';

/** GET /api/v1/events: the live event stream (Server-Sent Events), for a console or a script. */
export const eventRoutes: FastifyPluginAsyncZod<{ streams: EventStreams; reauthenticate: (authorization: string | undefined) => Promise<Principal | null> }> = async (app, { streams, reauthenticate }) => {
  app.get(
    '/events',
    {
      schema: {
        tags: ['events'],
        summary: 'The live event stream (Server-Sent Events): the webhook events the caller may see, resumable with Last-Event-ID',
        description:
          'Each event is `id: <position>`, `event: <type>`, `data: { "id", "type", "timestamp", "data" }` (the webhook body with its webhook-id). Reconnect with `Last-Event-ID` to go on after the last event seen, ' +
          'within the retention window (EVENT_RETENTION_HOURS); a position no longer held gets an `event: reset` first and the stream goes on from the oldest event held. ' +
          'An installer sees its own events, a property manager those of its sites, a distributor all. At most 5 streams per account.',
        querystring: z.strictObject({ types: z.string().max(512).optional().describe('comma-separated event types (default: all)'), lastEventId: z.string().max(64).optional().describe('instead of the Last-Event-ID header') }),
        response: { 200: z.string().describe('text/event-stream'), ...errorResponses(400, 429) },
      },
    },
    async (request, reply) => {
      const types = (request.query.types ?? '').split(',').map((t) => t.trim()).filter(Boolean);
      const unknown = types.filter((t) => !(eventTypes as readonly string[]).includes(t));
      if (unknown.length) throw new HttpError(400, 'validation_error', `unknown event types: ${unknown.join(', ')}`, { types: unknown });
      const { actorId, accountId } = request.principal;
      if (!streams.take(actorId, accountId)) throw new HttpError(429, 'too_many_streams', 'at most 5 event streams per account (20 per installer) are open at once');
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      raw.write('retry: 2000\n\n');
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        streams.release(actorId, accountId);
      };
      raw.on('close', close);
      // A comment every 15 s keeps proxies from closing a quiet stream.
      const heartbeat = setInterval(() => raw.write(': keep-alive\n\n'), 15_000);
      const lastEventId = (request.headers['last-event-id'] as string | undefined) ?? request.query.lastEventId;
      try {
        await streams.follow(
          request.principal,
          { lastEventId, types, recheck: () => reauthenticate(request.headers.authorization) },
          async (e) => {
            if (closed) return false;
            // A slow reader: wait for the socket to drain, or to close (then the stream ends).
            if (!raw.write(`id: ${e.position}\nevent: ${e.type}\ndata: ${e.body}\n\n`)) await new Promise((resolve) => { raw.once('drain', resolve); raw.once('close', resolve); });
            return !closed;
          },
          () => closed,
          () => raw.write('event: reset\ndata: {"reason":"the position is outside the retention window; going on from the oldest event held"}\n\n'),
        );
      } catch (err) {
        request.log.warn({ err: (err as Error).message }, 'an event stream ended on an error');
      } finally {
        close();
        raw.end();
      }
    },
  );
};
