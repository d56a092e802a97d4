import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../shared/errors.js';

/** True when the key is the device key of this MAC. */
export type VerifyDevice = (mac: string, key: string) => boolean;

const unauthorized = () => new AppError(401, 'unauthorized', 'device credentials required (Basic auth: MAC and device key)');

/**
 * Device-facing HTTP routes authenticate as the MQTT gateway does: Basic auth with the MAC as user name
 * and the device key as password. `mac` is the device the route is about, when the URL names one.
 */
export function authenticateDevice(request: FastifyRequest, reply: FastifyReply, verify: VerifyDevice, mac?: string | null): string {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(request.headers.authorization ?? '');
  const decoded = basic ? Buffer.from(basic[1]!, 'base64').toString('utf8') : '';
  const sep = decoded.indexOf(':');
  const user = decoded.slice(0, sep).toUpperCase();
  if (!basic || sep < 0 || mac === null || (mac !== undefined && user !== mac) || !/^[0-9A-F]{12}$/.test(user) || !verify(user, decoded.slice(sep + 1))) {
    reply.header('www-authenticate', 'Basic realm="devices"');
    throw unauthorized();
  }
  return user;
}
