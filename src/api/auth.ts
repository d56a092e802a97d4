import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccountService, Principal } from '../accounts/service.js';
import { HttpError } from './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** The route also takes an app station's HTTP Basic credentials (its SIP username and password). */
    appAuth?: boolean;
  }
}

/**
 * What a property manager may do (seed 004: property managers run residents and their access): read its
 * sites and their devices and jobs, manage residents, their PIN codes and cards and their apps, and reset
 * apartments.
 * Everything else (devices, MACs, firmware, remote maintenance, the directory's structure) is refused.
 */
const PROPERTY_MANAGER_ROUTES = new Set([
  'GET /api/v1/me',
  'DELETE /api/v1/tokens/:id',
  'GET /api/v1/sites',
  'GET /api/v1/sites/:siteId',
  'GET /api/v1/sites/:siteId/buildings',
  'GET /api/v1/sites/:siteId/export',
  'GET /api/v1/sites/:siteId/audit',
  'GET /api/v1/audit/writes',
  'GET /api/v1/buildings/:buildingId',
  'GET /api/v1/buildings/:buildingId/apartments',
  'GET /api/v1/apartments/:apartmentId',
  'POST /api/v1/apartments/:apartmentId/reset',
  'GET /api/v1/apartments/:apartmentId/residents',
  'GET /api/v1/sites/:siteId/residents',
  'GET /api/v1/tokens',
  'GET /api/v1/events',
  'POST /api/v1/apartments/:apartmentId/residents',
  'GET /api/v1/residents/:residentId',
  'PATCH /api/v1/residents/:residentId',
  'DELETE /api/v1/residents/:residentId',
  'GET /api/v1/residents/:residentId/credentials',
  'POST /api/v1/residents/:residentId/credentials',
  'DELETE /api/v1/credentials/:credentialId',
  'POST /api/v1/apartments/:apartmentId/app-registrations',
  'GET /api/v1/apartments/:apartmentId/app-stations',
  'DELETE /api/v1/app-stations/:appStationId',
  'GET /api/v1/devices',
  'GET /api/v1/devices/:mac',
  'GET /api/v1/devices/:mac/directory',
  'GET /api/v1/jobs',
  'GET /api/v1/jobs/:id',
  'GET /api/v1/sites/:siteId/calls',
  'GET /api/v1/sites/:siteId/door-events',
  'GET /api/v1/sites/:siteId/ixg',
  'GET /api/v1/sites/:siteId/app-status',
  'POST /api/v1/devices/:mac/relays/:relay/open',
  'GET /api/v1/devices/:mac/door-events',
  'GET /api/v1/apartments/:apartmentId/door-events',
]);

/**
 * onRequest hook for /api/v1: every route needs a valid, unrevoked bearer token; a property manager gets
 * its sites and only the routes it may use.
 */
export function bearerAuth(
  accounts: Pick<AccountService, 'authenticate'>,
  managedSites: (accountId: string) => Promise<string[]>,
  apps?: { authenticate(username: string, password: string): Promise<string | null> },
) {
  return async (request: FastifyRequest, _reply: FastifyReply) => {
    const header = request.headers.authorization;
    // An app station on a route that takes it: its SIP credentials, never a token.
    if (apps && request.routeOptions.config?.appAuth && header && /^Basic\s/i.test(header)) {
      const credentials = basicCredentials(header);
      const sip = credentials ? await apps.authenticate(credentials.user, credentials.password) : null;
      if (!sip) throw new HttpError(401, 'unauthorized', "invalid app station credentials (HTTP Basic: the SIP username and password of the app's registration)");
      request.appStation = sip;
      return;
    }
    const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new HttpError(401, 'unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    const principal = await accounts.authenticate(match[1]!);
    if (!principal) throw new HttpError(401, 'unauthorized', 'invalid or revoked token');
    if (principal.role === 'property-manager') {
      if (!PROPERTY_MANAGER_ROUTES.has(`${request.method} ${request.routeOptions.url}`)) {
        throw new HttpError(403, 'forbidden', 'a property manager manages residents and their access; this needs the installer');
      }
      principal.sites = await managedSites(principal.actorId);
    }
    request.principal = principal;
  };
}

/** The user and password of an `Authorization: Basic …` header; null for anything else. */
export function basicCredentials(header: string | undefined): { user: string; password: string } | null {
  const [scheme, encoded = ''] = (header ?? '').trim().split(/\s+/);
  if (scheme?.toLowerCase() !== 'basic') return null;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon > 0 ? { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) } : null;
}

export function requireDistributor(request: FastifyRequest): void {
  if (request.principal.role !== 'distributor') throw new HttpError(403, 'forbidden', 'only a distributor may do this');
}
