import { z } from 'zod';
import { eventTypes } from '../events/outbox.js';
import { singleLine } from '../shared/text.js';

const subscribable = eventTypes.filter((t) => t !== 'webhook.test') as [string, ...string[]];

const url = z
  .string()
  .max(2048)
  .refine((v) => {
    try {
      const u = new URL(v);
      return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password && !!u.hostname;
    } catch {
      return false;
    }
  }, 'an http(s) URL with a host and no credentials')
  .describe('where events are POSTed; never a loopback, link-local or private address unless the operator allows its network (WEBHOOK_ALLOWED_NETWORKS)');

const types = z
  .array(z.enum(subscribable))
  .max(subscribable.length)
  .refine((t) => new Set(t).size === t.length, 'event types must not repeat')
  .describe('the event types it gets; empty: all');

export const createEndpointBody = z.strictObject({
  url,
  description: singleLine(256).nullable().default(null),
  eventTypes: types.default([]),
  enabled: z.boolean().default(true),
});
export type CreateEndpointInput = z.infer<typeof createEndpointBody>;
export const patchEndpointBody = z
  .strictObject({ url: url.optional(), description: singleLine(256).nullable().optional(), eventTypes: types.optional(), enabled: z.boolean().optional() })
  .refine((p) => Object.keys(p).length > 0, 'nothing to change');
export type PatchEndpointInput = z.infer<typeof patchEndpointBody>;

export const endpointSchema = z.object({
  id: z.uuid(),
  url: z.string(),
  description: z.string().nullable(),
  eventTypes: z.array(z.string()),
  enabled: z.boolean(),
  disabledReason: z.string().nullable().describe('why the cloud disabled it (a 410 answer)'),
  previousSecretUntil: z.string().nullable().describe('during a rotation: until when the old secret signs too'),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type EndpointView = z.infer<typeof endpointSchema>;
export const endpointWithSecret = endpointSchema.extend({ secret: z.string().describe('whsec_…: shown only now; verify signatures with it (Standard Webhooks)') });

export const deliverySchema = z.object({
  id: z.number().int(),
  eventId: z.uuid().describe('the webhook-id the receiver saw'),
  type: z.string(),
  state: z.enum(['pending', 'succeeded', 'failed']),
  attempts: z.number().int(),
  nextAttemptAt: z.string().nullable(),
  createdAt: z.string(),
  lastAttemptAt: z.string().nullable(),
  lastStatus: z.number().int().nullable(),
  lastLatencyMs: z.number().int().nullable(),
  lastError: z.string().nullable(),
  lastResponse: z.string().nullable().describe('the first KiB of the last answer'),
});
export type DeliveryView = z.infer<typeof deliverySchema>;
export const deliveryDetail = deliverySchema.extend({
  event: z.object({ type: z.string(), timestamp: z.string(), data: z.unknown() }),
  log: z.array(z.object({ at: z.string(), status: z.number().int().nullable(), latencyMs: z.number().int(), error: z.string().nullable(), response: z.string().nullable() })),
});
