import { gzipSync } from 'node:zlib';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { DeviceKeys } from '../../devices/device-key.js';
import type { DocumentStore } from '../../documents/service.js';
import { normalizeMac } from '../../mac-library/mac.js';
import { authenticateDevice, parseRange } from '../device-auth.js';
import { errorSchema, HttpError } from '../errors.js';

export interface DeviceDocumentDeps {
  keys: DeviceKeys;
  /** The device's effective configuration: the same bytes its commands carry. */
  effectiveConfig: (mac: string) => Promise<{ text: string; hash: string } | null>;
  documents: DocumentStore;
}

/** Whether the client takes gzip (`Accept-Encoding: gzip`, not `gzip;q=0`). */
function acceptsGzip(header: string | undefined): boolean {
  for (const part of (header ?? '').split(',')) {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    if (coding !== 'gzip' && coding !== '*') continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/**
 * Compressed documents, kept so that a fleet fetching one document after a change compresses it once,
 * not once per device. Bounded by size; the oldest go first.
 */
class GzipCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(sha256: string, body: Buffer): Buffer {
    const hit = this.entries.get(sha256);
    if (hit) return hit;
    const gz = gzipSync(body);
    this.entries.set(sha256, gz);
    this.bytes += gz.length;
    for (const [key, value] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= value.length;
    }
    return gz;
  }
}

/** What devices pull over HTTP with their own credentials: their configuration and their documents. */
export const deviceDocumentRoutes: FastifyPluginAsyncZod<DeviceDocumentDeps> = async (app, deps) => {
  const gzipped = new GzipCache(32 * 1024 * 1024);

  app.get(
    '/autop/:file',
    {
      schema: {
        tags: ['devices (device-facing)'],
        summary: 'The effective configuration of a device: GET /autop/{MAC}.cfg with Basic auth (MAC, device key)',
        description: 'Byte for byte what the configuration commands carry (inline or as a document); X-Config-Hash is its SHA-256.',
        params: z.strictObject({ file: z.string().max(64) }),
        security: [{ deviceBasic: [] }],
        response: { 200: z.string(), 401: errorSchema, 404: errorSchema },
      },
    },
    async (request, reply) => {
      const mac = authenticateDevice(request, reply, deps.keys, normalizeMac(request.params.file.replace(/\.cfg$/i, '')));
      const config = await deps.effectiveConfig(mac);
      if (!config) throw new HttpError(404, 'not_found', `no device is bound to ${mac}`, { mac });
      return reply.header('content-type', 'text/plain; charset=utf-8').header('x-config-hash', config.hash).header('cache-control', 'no-store').send(config.text);
    },
  );

  app.route({
    method: ['GET', 'HEAD'],
    url: '/documents/:sha256',
    schema: {
      tags: ['devices (device-facing)'],
      summary: 'A document made for the device, named by its SHA-256 (Basic auth: MAC and device key)',
      description:
        'What is too large for an MQTT command (a large configuration, a one-time Autop list) is delivered as a document: the command names its URL, SHA-256 and size. ' +
        'ETag is the quoted SHA-256 (If-None-Match answers 304); with Accept-Encoding: gzip and no Range the body is gzip-compressed; Range asks for a part of the uncompressed bytes. ' +
        'A device may fetch only its own documents (404 otherwise).',
      params: z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lowercase hex SHA-256') }),
      security: [{ deviceBasic: [] }],
      response: { 200: z.any(), 206: z.any(), 304: z.null(), 401: errorSchema, 404: errorSchema, 416: errorSchema },
    },
    handler: async (request, reply) => {
      const mac = authenticateDevice(request, reply, deps.keys);
      const doc = await deps.documents.forDevice(mac, request.params.sha256);
      if (!doc) throw new HttpError(404, 'not_found', `no document ${request.params.sha256} for ${mac}`, { sha256: request.params.sha256 });
      const etag = `"${doc.sha256}"`;
      reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, max-age=86400, immutable').header('vary', 'accept-encoding').header('content-type', doc.mediaType);
      const ifNoneMatch = request.headers['if-none-match'];
      if (ifNoneMatch === etag || ifNoneMatch === `"${doc.sha256}-gzip"`) return reply.status(304).send(null);
      const range = parseRange(request.headers.range, doc.size);
      if (range === 'unsatisfiable') {
        reply.header('content-range', `bytes */${doc.size}`);
        throw new HttpError(416, 'range_not_satisfiable', `the document has ${doc.size} bytes`, { size: doc.size });
      }
      let body = doc.body;
      if (range) {
        body = doc.body.subarray(range.start, range.end + 1);
        reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${doc.size}`);
      } else if (acceptsGzip(request.headers['accept-encoding'])) {
        body = gzipped.get(doc.sha256, doc.body);
        // Another representation of the same bytes: the ETag says so, so a cache never mixes the two.
        reply.header('content-encoding', 'gzip').header('etag', `"${doc.sha256}-gzip"`);
      }
      reply.header('content-length', String(body.length));
      return request.method === 'HEAD' ? reply.send() : reply.send(body);
    },
  });
};
