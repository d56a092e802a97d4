import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { normalizeMac } from '../../mac-library/mac.js';
import { AppError } from '../../shared/errors.js';
import { errorSchema } from '../errors.js';

export interface DeviceConfigDeps {
  /** True when the Basic credentials are the device's MAC and device key. */
  verifyDevice: (mac: string, key: string) => boolean;
  effectiveConfig: (mac: string) => Promise<{ text: string; hash: string } | null>;
}

const unauthorized = () => new AppError(401, 'unauthorized', 'device credentials required (Basic auth: MAC and device key)');

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
      const mac = normalizeMac(request.params.file.replace(/\.cfg$/i, ''));
      const header = request.headers.authorization ?? '';
      const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
      if (!basic || !mac) throw unauthorized();
      const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const sep = decoded.indexOf(':');
      const user = decoded.slice(0, sep);
      if (sep < 0 || user !== mac || !deps.verifyDevice(mac, decoded.slice(sep + 1))) {
        reply.header('www-authenticate', 'Basic realm="autop"');
        throw unauthorized();
      }
      const config = await deps.effectiveConfig(mac);
      if (!config) throw new AppError(404, 'not_found', `no device is bound to ${mac}`, { mac });
      return reply.header('content-type', 'text/plain; charset=utf-8').header('x-config-hash', config.hash).header('cache-control', 'no-store').send(config.text);
    },
  );
};
