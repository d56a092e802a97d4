import { createHash } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { RequestContext, Submitted } from '../provisioning/service.js';

/** The Idempotency-Key header every job-creating route accepts (documented in the OpenAPI document). */
export const idempotencyHeaders = z.looseObject({
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, '1 to 255 visible ASCII characters')
    .optional()
    .describe(
      'Makes the request safe to retry: a retry with the same key answers the first answer and creates nothing new (kept 24 h). ' +
        'The same key with another request is 422 `idempotency_key_reused`; a retry while the first is still being answered is 409 ' +
        '`idempotency_key_in_progress` (retry in a second); if the first recorded its jobs but its answer was lost, 409 `idempotency_key_unanswered` names them (`details.jobIds`).',
    ),
});

/** Who asks and, when the request carries an Idempotency-Key, the key with a fingerprint of what is asked. */
export function requestContext(request: FastifyRequest): RequestContext {
  const key = (request.headers as { 'idempotency-key'?: string })['idempotency-key'];
  if (!key) return { principal: request.principal };
  const fingerprint = createHash('sha256')
    .update(`${request.method} ${request.routeOptions.url}\n${JSON.stringify(request.params ?? null)}\n${JSON.stringify(request.body ?? null)}`)
    .digest('hex');
  return { principal: request.principal, idempotency: { accountId: request.principal.actorId, key, fingerprint } };
}

/** Sends a job-creating request's answer; a replayed one says so in `Idempotent-Replayed`. */
export function sendSubmitted<T>(reply: FastifyReply, status: number, submitted: Submitted<T>) {
  if (submitted.replayed) reply.header('idempotent-replayed', 'true');
  return reply.status(status).send(submitted.answer);
}
