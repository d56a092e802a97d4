import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createDeviceBody, createdDeviceSchema, deviceSchema, listDevicesQuery, patchDeviceBody } from '../../devices/schemas.js';
import type { DeviceService } from '../../devices/service.js';
import { macParams } from '../../mac-library/schemas.js';
import { pageOf } from '../../shared/pagination.js';
import type { CallService } from '../../calls/service.js';
import { errorResponses } from '../errors.js';

/** A device as listed: its record, with its SIP registration as the calls domain saw it. */
const listedDeviceSchema = deviceSchema.extend({
  sipStatus: z.enum(['registered', 'unregistered']).describe("the device's SIP account registered with the SIP server now or not"),
  sipLastRegisteredAt: z.string().nullable().describe('when it last registered'),
});

export const deviceRoutes: FastifyPluginAsyncZod<{ devices: DeviceService; calls: CallService }> = async (app, { devices, calls }) => {

  app.post(
    '/devices',
    {
      schema: {
        tags: ['devices'],
        summary: 'Add a device: binds a MAC from your MAC library and allocates its SIP account',
        description: 'The SIP password is returned only in this response.',
        body: createDeviceBody,
        response: { 201: createdDeviceSchema, ...errorResponses(400, 409, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await devices.create(request.principal, request.body)),
  );

  app.get(
    '/devices',
    { schema: { tags: ['devices'], summary: 'List and search devices', querystring: listDevicesQuery, response: { 200: pageOf(listedDeviceSchema), ...errorResponses(400) } } },
    async (request) => {
      const page = await devices.list(request.principal, request.query);
      return { ...page, items: await calls.withSipState(page.items) };
    },
  );

  app.get(
    '/devices/:mac',
    { schema: { tags: ['devices'], summary: 'One device, with what the gateway saw of it', params: macParams, response: { 200: listedDeviceSchema, ...errorResponses(400, 404) } } },
    async (request) => (await calls.withSipState([await devices.get(request.principal, request.params.mac)]))[0]!,
  );

  app.patch(
    '/devices/:mac',
    {
      schema: {
        tags: ['devices'],
        summary: 'Change a device',
        params: macParams,
        body: patchDeviceBody,
        response: { 200: deviceSchema, ...errorResponses(400, 404, 415) },
      },
    },
    async (request) => devices.update(request.principal, request.params.mac, request.body),
  );

  app.delete(
    '/devices/:mac',
    {
      schema: {
        tags: ['devices'],
        summary: "Delete a device: unbinds its MAC (which stays in the MAC library) and closes the device's session",
        params: macParams,
        response: { 204: z.null(), ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => {
      await devices.remove(request.principal, request.params.mac);
      return reply.status(204).send(null);
    },
  );
};
