import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { macParams } from '../../mac-library/schemas.js';
import {
  acceptedAutopSchema,
  acceptedJobSchema,
  auditEntrySchema,
  auditQuery,
  autopBody,
  autopSetSchema,
  batchAcceptedSchema,
  batchBody,
  batchProgressSchema,
  connectTypeBody,
  jobSchema,
  listJobsQuery,
  resetBody,
  simpleJobBody,
} from '../../provisioning/schemas.js';
import type { ProvisioningService } from '../../provisioning/service.js';
import { pageOf } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';
import { idempotencyHeaders, requestContext, sendSubmitted } from '../idempotency.js';

const tags = ['remote maintenance'];

export const provisioningRoutes: FastifyPluginAsyncZod<{ provisioning: ProvisioningService }> = async (app, { provisioning }) => {
  app.get(
    '/devices/:mac/autop',
    { schema: { tags, summary: "The device's regular Autop", params: macParams, response: { 200: autopSetSchema, ...errorResponses(400, 404) } } },
    async (request) => provisioning.getRegularAutop(request.principal, request.params.mac),
  );

  app.put(
    '/devices/:mac/autop',
    {
      schema: {
        tags,
        summary: 'Replace the regular Autop (always valid) and deliver the configuration',
        description: 'Duplicate commands are not retained: an identical line is kept once, the same key twice keeps the last value; `dropped` says what was removed.',
        params: macParams,
        headers: idempotencyHeaders,
        body: autopBody,
        response: { 202: acceptedAutopSchema, ...errorResponses(400, 404, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.putRegularAutop(requestContext(request), request.params.mac, request.body.commands, request.body.expiresInSeconds)),
  );

  app.post(
    '/devices/:mac/autop/once',
    {
      schema: {
        tags,
        summary: 'One-time Autop: applied once, never again; ended by a reset',
        params: macParams,
        headers: idempotencyHeaders,
        body: autopBody,
        response: { 202: acceptedJobSchema, ...errorResponses(400, 404, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.oneTimeAutop(requestContext(request), request.params.mac, request.body.commands, request.body.expiresInSeconds)),
  );

  app.post(
    '/autop/batch',
    {
      schema: {
        tags,
        summary: 'Batch Autop to at most 500 of your devices (regular or one-time)',
        description: 'Regular batch lines join each device’s regular Autop (same key: the batch value wins).',
        headers: idempotencyHeaders,
        body: batchBody,
        response: { 202: batchAcceptedSchema, ...errorResponses(400, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.batchAutop(requestContext(request), request.body)),
  );

  app.get(
    '/autop/batch/:id',
    { schema: { tags, summary: 'Progress of a batch Autop', params: z.strictObject({ id: z.uuid() }), response: { 200: batchProgressSchema, ...errorResponses(400, 404) } } },
    async (request) => provisioning.batchProgress(request.principal, request.params.id),
  );

  app.post(
    '/devices/:mac/reboot',
    {
      schema: {
        tags,
        summary: 'Reboot the device',
        params: macParams,
        headers: idempotencyHeaders,
        body: simpleJobBody,
        response: { 202: acceptedJobSchema, ...errorResponses(400, 404, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.reboot(requestContext(request), request.params.mac, request.body?.expiresInSeconds)),
  );

  app.post(
    '/devices/:mac/reset',
    {
      schema: {
        tags,
        summary: 'Factory or configuration reset; cancels one-time Autop not yet applied',
        params: macParams,
        headers: idempotencyHeaders,
        body: resetBody,
        response: { 202: acceptedJobSchema.extend({ canceledOneTimeJobs: z.array(z.uuid()) }), ...errorResponses(400, 404, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.reset(requestContext(request), request.params.mac, request.body.mode, request.body.expiresInSeconds)),
  );

  app.put(
    '/devices/:mac/connect-type',
    {
      schema: {
        tags,
        summary: 'Set the SIP transmission type (part of the effective configuration)',
        params: macParams,
        headers: idempotencyHeaders,
        body: connectTypeBody,
        response: { 202: acceptedJobSchema, ...errorResponses(400, 404, 415, 422, 503) },
      },
    },
    async (request, reply) => sendSubmitted(reply, 202, await provisioning.setConnectType(requestContext(request), request.params.mac, request.body.connectType, request.body.expiresInSeconds)),
  );

  app.get(
    '/jobs',
    { schema: { tags, summary: 'List jobs, newest first', querystring: listJobsQuery, response: { 200: pageOf(jobSchema), ...errorResponses(400) } } },
    async (request) => provisioning.listJobs(request.principal, request.query),
  );

  app.get(
    '/jobs/:id',
    { schema: { tags, summary: 'One job', params: z.strictObject({ id: z.uuid() }), response: { 200: jobSchema, ...errorResponses(400, 404) } } },
    async (request) => provisioning.getJob(request.principal, request.params.id),
  );

  app.delete(
    '/jobs/:id',
    { schema: { tags, summary: 'Cancel a job that has not finished (409 otherwise)', params: z.strictObject({ id: z.uuid() }), response: { 200: jobSchema, ...errorResponses(400, 404, 409) } } },
    async (request) => provisioning.cancelJob(request.principal, request.params.id),
  );

  app.get(
    '/audit',
    { schema: { tags, summary: 'Who asked for what, when, and what came of it', querystring: auditQuery, response: { 200: pageOf(auditEntrySchema), ...errorResponses(400) } } },
    async (request) => provisioning.audit(request.principal, request.query),
  );
};
