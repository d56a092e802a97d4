import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { databaseErrorCode, isUnreachable } from '../db/errors.js';
import { DomainError, type DomainErrorKind } from '../shared/errors.js';

export const errorSchema = z
  .object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown() }) })
  .describe('Every error answers this shape');

type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 416 | 422 | 429 | 500 | 503;

/** The error responses a route documents, merged into its response schemas. */
export const errorResponses = (...statuses: ErrorStatus[]) =>
  Object.fromEntries([401, ...statuses].map((s) => [s, errorSchema])) as Record<number, typeof errorSchema>;

/** An error that only the HTTP layer knows (credentials, media types, ranges, download cap). */
export class HttpError extends Error {
  constructor(
    readonly status: ErrorStatus,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The one place where a domain's kind of error becomes an HTTP status. */
const statusOfKind: Record<DomainErrorKind, ErrorStatus> = {
  invalid: 400,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unprocessable: 422,
  unavailable: 503,
};

/**
 * Fastify's own refusals, in our words: its messages (and any parser text they might carry) never reach
 * an answer, so a client sees the same code and message whatever the library version says.
 */
const fastifyCodes: Record<string, [number, string, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large', 'the body is larger than this route takes'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'this route does not take a body of this content type'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_content_length', 'the body size differs from its Content-Length'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'empty_body', 'the content type says JSON but the body is empty'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json', 'the body is not valid JSON'],
  FST_ERR_BAD_URL: [400, 'invalid_url', 'the URL holds a part that cannot be decoded'],
  FST_ERR_MAX_PARAM_LENGTH: [414, 'uri_too_long', 'a part of the URL is longer than the service takes'],
  FST_ERR_ROUTE_MISSING_CONTENT_TYPE: [400, 'missing_content_type', 'the body needs a Content-Type'],
  FST_ERR_ROUTE_MISSING_CONTENT: [400, 'empty_body', 'this route needs a body'],
};

const pgCodes: Record<string, [number, string, string]> = {
  '23505': [409, 'conflict', 'the record already exists'],
  '23503': [409, 'conflict', 'the record is still referenced or refers to a missing record'],
  // Text PostgreSQL cannot store (NUL): the boundary checks should have refused it; never a 500.
  '22P05': [400, 'invalid_text', 'the request holds characters that cannot be stored'],
  '22021': [400, 'invalid_text', 'the request holds characters that cannot be stored'],
};

/** An error body of ours for fastify's router refusals (a URL it cannot decode), which skip the error handler. */
export function frameworkError(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const [status, code, message] = fastifyCodes[err.code] ?? [400, 'bad_request', 'the request cannot be handled'];
  request.log.info({ err: err.message, code: err.code }, 'request refused by the router');
  return reply.status(status).send({ error: { code, message, details: null } });
}

const clientErrors: Record<string, [number, string, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'the request did not arrive in time'],
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large', 'the request headers are larger than the service takes'],
};

/** Node's HTTP parser refusals (malformed request line or headers) answer the same error shape, then close. */
export function clientError(err: NodeJS.ErrnoException, socket: Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] = clientErrors[err.code ?? ''] ?? [400, 'bad_request', 'the request is not valid HTTP'];
  const body = JSON.stringify({ error: { code, message, details: null } });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/** One error handler for the whole API: every error leaves as { error: { code, message, details } }. */
export function registerErrorHandling(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError & { code?: string }, request, reply) => {
    const send = (status: number, code: string, message: string, details: unknown = null) =>
      reply.status(status).send({ error: { code, message, details } });

    if (err instanceof DomainError) return send(statusOfKind[err.kind], err.code, err.message, err.details);
    if (err instanceof HttpError) return send(err.status, err.code, err.message, err.details);
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => ({
        in: err.validationContext,
        path: String(v.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.'),
        message: v.message,
      }));
      const summary = issues.map((i) => `${i.in}${i.path ? `.${i.path}` : ''}: ${i.message}`).join('; ');
      return send(400, 'validation_error', summary, { issues });
    }
    if (isResponseSerializationError(err)) {
      request.log.error({ err }, 'response did not match its schema');
      return send(500, 'internal_error', 'internal error');
    }
    const known = err.code ? fastifyCodes[err.code] : undefined;
    if (known) return send(known[0], known[1], known[2]);
    if (err.code === 'FST_ERR_VALIDATION' || err.validation) {
      request.log.info({ err: err.message }, 'request refused by a schema');
      return send(400, 'validation_error', 'the request does not match its schema');
    }
    const sqlState = databaseErrorCode(err);
    const pg = sqlState ? pgCodes[sqlState] : undefined;
    if (pg) return send(pg[0], pg[1], pg[2]);
    if (isUnreachable(err)) {
      request.log.warn({ err: err.message }, 'database unreachable');
      return send(503, 'database_unavailable', 'the database is not reachable; nothing was changed, retry later');
    }
    // A library's own 4xx (a plugin's refusal): its status stands, its words are logged, not answered.
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      request.log.info({ err: err.message, code: err.code }, 'request refused by a library');
      return send(err.statusCode, 'bad_request', 'the request cannot be handled');
    }
    request.log.error({ err }, 'request failed');
    return send(500, 'internal_error', 'internal error');
  });

  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}`, details: null } });
  });
}
