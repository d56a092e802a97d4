import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createDeviceBody, createdDeviceSchema, deviceSchema, listDevicesQuery, patchDeviceBody } from '../../devices/schemas.js';
import type { DeviceService } from '../../devices/service.js';
import { macParams } from '../../mac-library/schemas.js';
import { pageOf } from '../../shared/pagination.js';
import { errorResponses } from '../errors.js';

export const deviceRoutes: FastifyPluginAsyncZod<{ devices: DeviceService }> = async (app, { devices }) => {
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
    { schema: { tags: ['devices'], summary: 'List and search devices', querystring: listDevicesQuery, response: { 200: pageOf(deviceSchema), ...errorResponses(400) } } },
    async (request) => devices.list(request.principal, request.query),
  );

  app.get(
    '/devices/:mac',
    { schema: { tags: ['devices'], summary: 'One device, with what the gateway saw of it', params: macParams, response: { 200: deviceSchema, ...errorResponses(400, 404) } } },
    async (request) => devices.get(request.principal, request.params.mac),
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
