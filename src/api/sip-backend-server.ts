import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { CallService } from '../calls/service.js';
import type { Logger } from '../logger.js';
import { registerErrorHandling } from './errors.js';
import { sipBackendRoutes } from './routes/sip-backend.js';

export interface SipBackendDeps {
  logger: Logger;
  calls: CallService;
  /** The token Kamailio presents (Authorization: Bearer …). */
  token: string;
  /** A request's headers within this, the whole request within `requestTimeoutMs` (as on the public port). */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
}

/**
 * Kamailio's back end on a listener of its own (SIP_BACKEND_HOST:SIP_BACKEND_PORT, loopback by default):
 * no public client can take the connections SIP authentication needs, and the routes are in no public
 * OpenAPI document. The same error handler and error body as the public API.
 */
export async function buildSipBackend(deps: SipBackendDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'sip-backend' }) as FastifyBaseLogger,
    // Kamailio keeps its connections (http_client keep_connections): idle ones stay longer than a
    // client's would, so a reused connection is rarely one the server is closing.
    keepAliveTimeout: 75_000,
    requestTimeout: deps.requestTimeoutMs,
    http: { headersTimeout: deps.headersTimeoutMs, connectionsCheckingInterval: 1000 },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app);
  await app.register(sipBackendRoutes, { prefix: '/internal/sip', calls: deps.calls, token: deps.token });
  return app;
}
