import type { FastifyReply, FastifyRequest } from 'fastify';
import type { DeviceKeys } from '../devices/device-key.js';
import { isCanonicalMac } from '../mac-library/mac.js';
import { HttpError } from './errors.js';

const unauthorized = () => new HttpError(401, 'unauthorized', 'device credentials required (Basic auth: MAC and device key)');

/**
 * Device-facing HTTP routes authenticate as the MQTT gateway does, with the same key check: Basic auth
 * with the MAC as user name and the device key as password. `mac` is the device the URL names, if any.
 */
export function authenticateDevice(request: FastifyRequest, reply: FastifyReply, keys: DeviceKeys, mac?: string | null): string {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(request.headers.authorization ?? '');
  const decoded = basic ? Buffer.from(basic[1]!, 'base64').toString('utf8') : '';
  const sep = decoded.indexOf(':');
  const user = decoded.slice(0, sep).toUpperCase();
  if (!basic || sep < 0 || mac === null || (mac !== undefined && user !== mac) || !isCanonicalMac(user) || !keys.verify(user, decoded.slice(sep + 1))) {
    reply.header('www-authenticate', 'Basic realm="devices"');
    throw unauthorized();
  }
  return user;
}

/** The one byte range a client asks for, or null for the whole body; 'unsatisfiable' past the end. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null; // not a single byte range: serve the whole body (RFC 9110)
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}
