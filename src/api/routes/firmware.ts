import fastifyMultipart from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { FirmwareCatalogue, UploadPart } from '../../firmware/catalogue.js';
import { firmwareParams, firmwareSchema, listFirmwareQuery } from '../../firmware/schemas.js';
import { HttpError } from '../errors.js';
import { pageOf } from '../../shared/pagination.js';
import { requireDistributor } from '../auth.js';
import { errorResponses } from '../errors.js';

const tags = ['firmware'];

/** The multipart body as domain parts; the file part is a stream the catalogue must consume. */
async function* uploadParts(request: FastifyRequest): AsyncIterable<UploadPart> {
  for await (const part of request.parts()) {
    if (part.type === 'file') yield { kind: 'file', name: part.fieldname, fileName: part.filename, stream: part.file };
    else yield { kind: 'field', name: part.fieldname, value: typeof part.value === 'string' ? part.value : String(part.value) };
  }
}

export const firmwareRoutes: FastifyPluginAsyncZod<{ catalogue: FirmwareCatalogue; maxImageBytes: number }> = async (app, { catalogue, maxImageBytes }) => {
  // One more byte than the limit reaches the catalogue, which then refuses the upload as too large.
  await app.register(fastifyMultipart, { preservePath: true, limits: { fileSize: maxImageBytes + 1, fields: 10, fieldSize: 16 * 1024, parts: 20 }, throwFileSizeLimit: false });

  app.get(
    '/firmware',
    { schema: { tags, summary: 'The firmware list: version, model, changelog, created time', querystring: listFirmwareQuery, response: { 200: pageOf(firmwareSchema), ...errorResponses(400) } } },
    async (request) => catalogue.list(request.query),
  );

  app.get(
    '/firmware/:id',
    { schema: { tags, summary: 'One firmware', params: firmwareParams, response: { 200: firmwareSchema, ...errorResponses(400, 404) } } },
    async (request) => catalogue.get(request.params.id),
  );

  app.post(
    '/firmware',
    {
      schema: {
        tags,
        summary: 'Upload a firmware image (distributor)',
        description:
          'multipart/form-data with the fields `model` (e.g. R29), `version` (dotted, its first part names the model, e.g. 29.30.2.805), optional `changelog`, and the image in the part `file` (a plain file name). ' +
          'The image streams to disk and is hashed on the way; the same model and version twice is a 409.',
        consumes: ['multipart/form-data'],
        response: { 201: firmwareSchema, ...errorResponses(400, 403, 409, 413, 415) },
      },
      config: {
        openapiBody: {
          type: 'object',
          required: ['model', 'version', 'file'],
          properties: {
            model: { type: 'string', description: 'model name, e.g. R29, X916, IXGW-TGW' },
            version: { type: 'string', description: "dotted version whose first part names the model, e.g. 29.30.2.805" },
            changelog: { type: 'string', maxLength: 4000 },
            file: { type: 'string', format: 'binary', description: 'the image, with a plain file name' },
          },
        },
      },
    },
    async (request, reply) => {
      requireDistributor(request);
      if (!request.isMultipart()) throw new HttpError(415, 'unsupported_media_type', 'a firmware upload is multipart/form-data with model, version, changelog and file');
      return reply.status(201).send(await catalogue.upload(request.principal, uploadParts(request)));
    },
  );

  app.delete(
    '/firmware/:id',
    { schema: { tags, summary: 'Delete firmware no pending or running upgrade uses (distributor)', params: firmwareParams, response: { 204: z.null(), ...errorResponses(400, 403, 404, 409) } } },
    async (request, reply) => {
      requireDistributor(request);
      await catalogue.delete(request.params.id);
      return reply.status(204).send(null);
    },
  );
};
