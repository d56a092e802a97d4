import fastifyMultipart from '@fastify/multipart';
import type { FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { FirmwareCatalogue, UploadPart } from '../../firmware/catalogue.js';
import { firmwareParams, firmwareSchema, listFirmwareQuery } from '../../firmware/schemas.js';
import { DomainError } from '../../shared/errors.js';
import { HttpError } from '../errors.js';
import { pageOf } from '../../shared/pagination.js';
import { requireDistributor } from '../auth.js';
import { errorResponses } from '../errors.js';

const tags = ['firmware'];
const MAX_PARTS = 20;
const MAX_FIELDS = 10;

/** The multipart parser's refusals, in our words (its own and busboy's texts are logged, not answered). */
const multipartLimits: Record<string, string> = { FST_PARTS_LIMIT: 'parts', FST_FILES_LIMIT: 'files', FST_FIELDS_LIMIT: 'fields' };
function multipartFault(request: FastifyRequest, err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const code = (err as { code?: unknown }).code;
  request.log.info({ err: (err as Error).message, code }, 'firmware upload: the multipart body was refused');
  const limit = typeof code === 'string' ? multipartLimits[code] : undefined;
  if (limit) return new HttpError(413, 'too_many_parts', `a firmware upload has at most ${MAX_PARTS} parts and ${MAX_FIELDS} fields`, { limit });
  return new HttpError(400, 'invalid_multipart', 'the body is not well-formed multipart/form-data (a boundary, a part header or the closing boundary is missing)');
}

/** The multipart body as domain parts; the file part is a stream the catalogue must consume. */
async function* uploadParts(request: FastifyRequest, faults: WeakSet<object>): AsyncIterable<UploadPart> {
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        // Read after the whole body arrived, a cut-off part was failed and destroyed before anyone
        // listened: it would neither end nor fail for the catalogue, and the request would hang.
        if (part.file.destroyed) throw new Error('the file part was cut off');
        part.file.on('error', (err) => faults.add(err));
        yield { kind: 'file', name: part.fieldname, fileName: part.filename, stream: part.file };
      } else yield { kind: 'field', name: part.fieldname, value: typeof part.value === 'string' ? part.value : String(part.value) };
    }
  } catch (err) {
    throw multipartFault(request, err);
  }
}

export const firmwareRoutes: FastifyPluginAsyncZod<{ catalogue: FirmwareCatalogue; maxImageBytes: number }> = async (app, { catalogue, maxImageBytes }) => {
  // One more byte than the limit reaches the catalogue, which then refuses the upload as too large.
  await app.register(fastifyMultipart, { preservePath: true, limits: { fileSize: maxImageBytes + 1, fields: MAX_FIELDS, fieldSize: 16 * 1024, parts: MAX_PARTS }, throwFileSizeLimit: false });

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
      // An error the file stream raised (busboy's, mid-part) or a body cut off is the client's, not the catalogue's.
      const faults = new WeakSet<object>();
      try {
        return reply.status(201).send(await catalogue.upload(request.principal, uploadParts(request, faults)));
      } catch (err) {
        if (err instanceof DomainError || err instanceof HttpError) throw err;
        throw (err instanceof Error && faults.has(err)) || !request.raw.complete ? multipartFault(request, err) : err;
      }
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
