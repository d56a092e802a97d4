import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { normalizeMac } from '../../mac-library/mac.js';
import { AppError } from '../../shared/errors.js';
import { authenticateDevice, type VerifyDevice } from '../device-auth.js';
import { errorSchema } from '../errors.js';

export interface DeviceConfigDeps {
  verifyDevice: VerifyDevice;
  effectiveConfig: (mac: string) => Promise<{ text: string; hash: string } | null>;
}

/** Devices pull their effective configuration over HTTP, as Autop servers serve them. */
export const deviceConfigRoutes: FastifyPluginAsyncZod<DeviceConfigDeps> = async (app, deps) => {
  app.get(
    '/autop/:file',
    {
      schema: {
        tags: ['devices (device-facing)'],
        summary: 'The effective configuration of a device: GET /autop/{MAC}.cfg with Basic auth (MAC, device key)',
        params: z.strictObject({ file: z.string().max(64) }),
        security: [{ deviceBasic: [] }],
        response: { 200: z.string(), 401: errorSchema, 404: errorSchema },
      },
    },
    async (request, reply) => {
      const mac = authenticateDevice(request, reply, deps.verifyDevice, normalizeMac(request.params.file.replace(/\.cfg$/i, '')));
      const config = await deps.effectiveConfig(mac);
      if (!config) throw new AppError(404, 'not_found', `no device is bound to ${mac}`, { mac });
      return reply.header('content-type', 'text/plain; charset=utf-8').header('x-config-hash', config.hash).header('cache-control', 'no-store').send(config.text);
    },
  );
};
