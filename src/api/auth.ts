import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccountService, Principal } from '../accounts/service.js';
import { HttpError } from './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

/** onRequest hook for /api/v1: every route needs a valid, unrevoked bearer token. */
export function bearerAuth(accounts: AccountService) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const header = request.headers.authorization;
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new HttpError(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    const principal = await accounts.authenticate(match[1]!);
    if (!principal) throw new HttpError(401, 'unauthorized', 'invalid or revoked token');
    request.principal = principal;
  };
}

export function requireDistributor(request: FastifyRequest): void {
  if (request.principal.role !== 'distributor') throw new HttpError(403, 'forbidden', 'only a distributor may do this');
}
