import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { DirectoryRenders } from '../../directory/follower.js';
import { deviceDirectorySchema } from '../../directory/schemas.js';
import type { DeviceService } from '../../devices/service.js';
import type { DocumentStore } from '../../documents/service.js';
import { macParams } from '../../mac-library/schemas.js';
import { errorResponses } from '../errors.js';

export interface DeviceDirectoryDeps {
  devices: DeviceService;
  renders: DirectoryRenders;
  documents: DocumentStore;
}

export const deviceDirectoryRoutes: FastifyPluginAsyncZod<DeviceDirectoryDeps> = async (app, { devices, renders, documents }) => {
  app.get(
    '/devices/:mac/directory',
    {
      schema: {
        tags: ['directory'],
        summary: 'What the directory gives a device: its time zone and its contact and credential documents, as the device fetches them',
        params: macParams,
        response: { 200: deviceDirectorySchema, ...errorResponses(400, 404) },
      },
    },
    async (request) => {
      const device = await devices.get(request.principal, request.params.mac);
      const part = await renders.of(device.mac);
      const docs = [];
      for (const d of part?.documents ?? []) {
        const stored = await documents.forDevice(device.mac, d.sha256);
        if (stored) docs.push({ name: d.name as 'contacts' | 'credentials', sha256: d.sha256, size: d.size, content: JSON.parse(stored.body.toString('utf8')) as unknown });
      }
      return { mac: device.mac, siteId: device.siteId, timeZone: part?.timeZone ?? null, documents: docs };
    },
  );
};
