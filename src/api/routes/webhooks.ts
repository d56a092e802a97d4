import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { pageOf, pageQuery } from '../../shared/pagination.js';
import { createEndpointBody, deliveryDetail, deliverySchema, endpointSchema, endpointWithSecret, patchEndpointBody } from '../../webhooks/schemas.js';
import type { WebhookEndpoints } from '../../webhooks/service.js';
import { errorResponses } from '../errors.js';

const tags = ['webhooks'];
const params = z.strictObject({ id: z.uuid() });
const deliveryParams = z.strictObject({ id: z.uuid(), deliveryId: z.coerce.number().int().positive() });

/** Webhook endpoints (docs/events.md): Standard Webhooks, signed, retried for about three days. */
export const webhookRoutes: FastifyPluginAsyncZod<{ webhooks: WebhookEndpoints }> = async (app, { webhooks }) => {
  app.post(
    '/webhooks',
    {
      schema: {
        tags,
        summary: 'Subscribe a receiver to events (installer, or a distributor for its whole scope); answers the signing secret once',
        description:
          'Events are POSTed as `{ "type", "timestamp", "data" }` with `webhook-id` (stable across retries: the idempotency key), `webhook-timestamp` and `webhook-signature` (Standard Webhooks, `v1,<base64 HMAC-SHA256>`). ' +
          'Any 2xx is success; other answers and failures are retried with exponential backoff and jitter for about 3 days (`Retry-After` honoured); 410 disables the endpoint. Redirects are not followed.',
        body: createEndpointBody,
        response: { 201: endpointWithSecret, ...errorResponses(400, 403, 409) },
      },
    },
    async (request, reply) => reply.status(201).send(await webhooks.create(request.principal, request.body)),
  );
  app.get('/webhooks', { schema: { tags, summary: 'Your webhook endpoints', response: { 200: z.object({ items: z.array(endpointSchema) }), ...errorResponses(403) } } }, async (request) => ({ items: await webhooks.list(request.principal) }));
  app.get('/webhooks/:id', { schema: { tags, summary: 'One webhook endpoint', params, response: { 200: endpointSchema, ...errorResponses(400, 403, 404) } } }, async (request) => webhooks.get(request.principal, request.params.id));
  app.patch(
    '/webhooks/:id',
    { schema: { tags, summary: 'Change an endpoint: URL, description, event types, enabled (enabling clears a 410)', params, body: patchEndpointBody, response: { 200: endpointSchema, ...errorResponses(400, 403, 404) } } },
    async (request) => webhooks.update(request.principal, request.params.id, request.body),
  );
  app.delete('/webhooks/:id', { schema: { tags, summary: 'Remove an endpoint and its delivery log', params, response: { 204: z.null(), ...errorResponses(400, 403, 404) } } }, async (request, reply) => {
    await webhooks.remove(request.principal, request.params.id);
    return reply.status(204).send(null);
  });
  app.post(
    '/webhooks/:id/rotate-secret',
    {
      schema: {
        tags,
        summary: 'A new signing secret, answered once; the old one signs too (a second signature) during the overlap',
        params,
        body: z.strictObject({ overlapSeconds: z.number().int().min(0).max(7 * 24 * 3600).default(24 * 3600) }).default({ overlapSeconds: 24 * 3600 }),
        response: { 200: endpointWithSecret, ...errorResponses(400, 403, 404) },
      },
    },
    async (request) => webhooks.rotate(request.principal, request.params.id, request.body.overlapSeconds),
  );
  app.post('/webhooks/:id/test', { schema: { tags, summary: 'Send a webhook.test event to this endpoint', params, response: { 202: z.object({ queued: z.literal(true) }), ...errorResponses(400, 403, 404) } } }, async (request, reply) => {
    await webhooks.test(request.principal, request.params.id);
    return reply.status(202).send({ queued: true as const });
  });
  app.get(
    '/webhooks/:id/deliveries',
    {
      schema: {
        tags,
        summary: "The endpoint's delivery log, newest first: each event's state, attempts, last status, latency and answer",
        params,
        querystring: z.strictObject({ ...pageQuery, state: z.enum(['pending', 'succeeded', 'failed']).optional() }),
        response: { 200: pageOf(deliverySchema), ...errorResponses(400, 403, 404) },
      },
    },
    async (request) => webhooks.deliveries(request.principal, request.params.id, request.query),
  );
  app.get(
    '/webhooks/:id/deliveries/:deliveryId',
    { schema: { tags, summary: 'One delivery with its event and every attempt', params: deliveryParams, response: { 200: deliveryDetail, ...errorResponses(400, 403, 404) } } },
    async (request) => webhooks.delivery(request.principal, request.params.id, request.params.deliveryId),
  );
  app.post(
    '/webhooks/:id/deliveries/:deliveryId/replay',
    { schema: { tags, summary: 'Send one delivery again now (same webhook-id)', params: deliveryParams, response: { 202: z.object({ replayed: z.number().int() }), ...errorResponses(400, 403, 404) } } },
    async (request, reply) => reply.status(202).send(await webhooks.replay(request.principal, request.params.id, { deliveryId: request.params.deliveryId })),
  );
  app.post(
    '/webhooks/:id/replay',
    {
      schema: {
        tags,
        summary: 'Send again every delivery of events since a time (within the event retention)',
        params,
        body: z.strictObject({ since: z.iso.datetime({ offset: true }) }),
        response: { 202: z.object({ replayed: z.number().int() }), ...errorResponses(400, 403, 404) },
      },
    },
    async (request, reply) => reply.status(202).send(await webhooks.replay(request.principal, request.params.id, { since: new Date(request.body.since) })),
  );
};
