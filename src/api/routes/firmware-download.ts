import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { DeviceKeys } from '../../devices/device-key.js';
import type { FirmwareCatalogue } from '../../firmware/catalogue.js';
import type { Permit, Semaphore } from '../../infra/shared-semaphore.js';
import { firmwareParams } from '../../firmware/schemas.js';
import { authenticateDevice, parseRange } from '../device-auth.js';
import { errorSchema, HttpError } from '../errors.js';
import type { Metrics } from '../../metrics/registry.js';

export interface FirmwareDownloadDeps {
  catalogue: FirmwareCatalogue;
  keys: DeviceKeys;
  /**
   * The download slots (FIRMWARE_MAX_DOWNLOADS of them, shared by every API process through Redis); a
   * device that finds none free is told when to retry.
   */
  slots: DownloadSlots;
  /** Downloads in flight and bytes served. */
  metrics?: Metrics;
}

export type DownloadSlots = Semaphore;

/**
 * Devices download firmware images here with their own credentials, only while an upgrade to that image
 * is running for them. Range requests resume a cut download; the ETag is the image's SHA-256. HEAD answers
 * the same headers without the image (and without taking a download slot).
 */
export const firmwareDownloadRoutes: FastifyPluginAsyncZod<FirmwareDownloadDeps> = async (app, deps) => {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/firmware/:id/image',
    schema: {
      tags: ['devices (device-facing)'],
      summary: 'Download a firmware image (device credentials; Range and If-Range supported)',
      description:
        'Basic auth with the MAC and device key. 200 with the whole image or 206 with the asked range; ETag is the quoted SHA-256 and X-Firmware-Sha256 carries it in hex. ' +
        'Only a device with an unfinished upgrade to this firmware may download it (403 otherwise). Over the download cap the answer is 503 with Retry-After (seconds). ' +
        'HEAD answers the same headers without a body.',
      params: firmwareParams,
      security: [{ deviceBasic: [] }],
      response: { 200: z.any().describe('the whole image (application/octet-stream)'), 206: z.any().describe('the asked byte range'), 401: errorSchema, 403: errorSchema, 404: errorSchema, 416: errorSchema, 500: errorSchema, 503: errorSchema },
    },
    handler: async (request, reply) => {
      const mac = authenticateDevice(request, reply, deps.keys);
      const found = await deps.catalogue.forDownload(mac, request.params.id);
      if (!found) throw new HttpError(404, 'not_found', `no firmware ${request.params.id}`, { firmwareId: request.params.id });
      const fw = found.firmware;
      if (!found.allowed) {
        throw new HttpError(403, 'no_upgrade', `device ${mac} has no upgrade to firmware ${fw.id} in progress`, { mac, firmwareId: fw.id });
      }
      const etag = `"${fw.sha256}"`;
      reply.header('etag', etag).header('accept-ranges', 'bytes').header('x-firmware-sha256', fw.sha256).header('cache-control', 'private, no-transform');
      // If-Range: a range of another image (the ETag changed) is worthless; send the whole new image.
      const ifRange = request.headers['if-range'];
      const range = ifRange && ifRange !== etag ? null : parseRange(request.headers.range, fw.size);
      if (range === 'unsatisfiable') {
        reply.header('content-range', `bytes */${fw.size}`);
        throw new HttpError(416, 'range_not_satisfiable', `the image has ${fw.size} bytes`, { size: fw.size });
      }
      const { start, end } = range ?? { start: 0, end: fw.size - 1 };
      reply.header('content-type', 'application/octet-stream').header('content-length', String(end - start + 1));
      if (range) reply.status(206).header('content-range', `bytes ${start}-${end}/${fw.size}`);
      if (request.method === 'HEAD') {
        if (!(await deps.catalogue.hasImage(fw.id))) throw imageMissing(fw.id);
        return reply.send();
      }
      // The slot goes back exactly once (Permit.release is idempotent): when the response is done or its
      // connection closes, or when the request fails before streaming. A connection that closed while the
      // slot was being taken gives it back at once.
      let permit: Permit | null = null;
      let gone = false;
      reply.raw.once('close', () => {
        gone = true;
        permit?.release();
      });
      permit = await deps.slots.acquire();
      if (!permit) {
        // Jittered so that the devices turned away do not all come back in the same second.
        const retryAfter = 1 + Math.floor(Math.random() * 5);
        reply.removeHeader('content-length').removeHeader('content-range').header('retry-after', String(retryAfter));
        throw new HttpError(503, 'download_busy', `all ${deps.slots.capacity} download slots are taken; retry in ${retryAfter} s`, { retryAfterSeconds: retryAfter });
      }
      const taken = permit;
      if (gone || reply.raw.closed) {
        taken.release();
        return; // nobody to answer
      }
      try {
        const stream = await deps.catalogue.readImage(fw.id, start, end);
        if (!stream) {
          request.log.error({ firmwareId: fw.id }, 'firmware image file is missing from DATA_DIR');
          reply.removeHeader('content-length').removeHeader('content-range');
          throw imageMissing(fw.id);
        }
        if (deps.metrics) {
          const download = deps.metrics.downloadStarted();
          stream.on('data', (chunk: Buffer) => download.sent(chunk.length));
          reply.raw.once('close', () => download.end());
        }
        return reply.send(stream);
      } catch (err) {
        taken.release();
        throw err;
      }
    },
  });
};

const imageMissing = (id: string) => new HttpError(500, 'image_missing', `the image of firmware ${id} is missing on the server`, { firmwareId: id });
