import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { addMacBody, importQuery, importResultSchema, listMacQuery, macEntrySchema, macParams } from '../../mac-library/schemas.js';
import type { MacLibraryService } from '../../mac-library/service.js';
import { MAX_IMPORT_ROWS } from '../../mac-library/csv.js';
import { CSV_TYPES } from '../../shared/csv.js';
import { pageOf } from '../../shared/pagination.js';
import type { SpreadsheetReader } from '../../shared/sheets.js';
import { errorResponses, HttpError } from '../errors.js';

// Spreadsheet programs on Windows upload CSV as application/vnd.ms-excel.
const CSV_BODY_LIMIT = 4 * 1024 * 1024;

export const macLibraryRoutes: FastifyPluginAsyncZod<{ macLibrary: MacLibraryService; spreadsheets: SpreadsheetReader }> = async (app, { macLibrary, spreadsheets }) => {
  app.addContentTypeParser(CSV_TYPES, { parseAs: 'string', bodyLimit: CSV_BODY_LIMIT }, (_req, body, done) => done(null, body));

  app.post(
    '/mac-library',
    {
      schema: {
        tags: ['MAC library'],
        summary: 'Register a MAC in a MAC library',
        body: addMacBody,
        response: { 201: macEntrySchema, ...errorResponses(400, 403, 404, 409, 415) },
      },
    },
    async (request, reply) => reply.status(201).send(await macLibrary.add(request.principal, request.body.mac, request.body.installerId)),
  );

  app.post(
    '/mac-library/import',
    {
      bodyLimit: CSV_BODY_LIMIT,
      schema: {
        tags: ['MAC library'],
        summary: 'Import the MAC template (text/csv, one MAC column, up to 50,000 rows)',
        description:
          'Valid rows are added in one transaction; duplicates and MACs already registered are skipped; invalid rows are reported by line. The file is read in a worker thread, within SPREADSHEET_MAX_CELLS cells and SPREADSHEET_DEADLINE_MS: beyond them 413 `spreadsheet_too_large` (details: limit, found); a malformed file is 400 `csv_invalid` naming its line; 503 `spreadsheet_busy` while too many files are being read. A cell written `\'+…` (a spreadsheet\'s formula escape) reads without the `\'`.',
        querystring: importQuery,
        consumes: CSV_TYPES,
        body: z.string().describe('CSV text with a "MAC" header column'),
        response: { 200: importResultSchema, ...errorResponses(400, 403, 404, 413, 415, 503) },
      },
      preValidation: async (request) => {
        const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (!CSV_TYPES.includes(type)) throw new HttpError(415, 'unsupported_media_type', `send the MAC template as text/csv, not ${type || 'no content type'}`);
      },
    },
    async (request) => macLibrary.importCsv(request.principal, () => spreadsheets.read('csv', request.body, MAX_IMPORT_ROWS + 1), request.query.installerId),
  );

  app.get(
    '/mac-library',
    {
      schema: {
        tags: ['MAC library'],
        summary: 'List and search the MAC library',
        querystring: listMacQuery,
        response: { 200: pageOf(macEntrySchema), ...errorResponses(400) },
      },
    },
    async (request) => macLibrary.list(request.principal, request.query),
  );

  app.get(
    '/mac-library/:mac',
    { schema: { tags: ['MAC library'], summary: 'One MAC library entry', params: macParams, response: { 200: macEntrySchema, ...errorResponses(400, 404) } } },
    async (request) => macLibrary.get(request.principal, request.params.mac),
  );

  app.delete(
    '/mac-library/:mac',
    {
      schema: {
        tags: ['MAC library'],
        summary: 'Remove a MAC (409 while a device is bound to it)',
        params: macParams,
        response: { 204: z.null(), ...errorResponses(400, 404, 409) },
      },
    },
    async (request, reply) => {
      await macLibrary.remove(request.principal, request.params.mac);
      return reply.status(204).send(null);
    },
  );
};
