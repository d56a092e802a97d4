import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { siteParams } from '../../directory/schemas.js';
import type { DirectoryService } from '../../directory/service.js';
import { SAMPLE_ROW, TEMPLATE_COLUMNS } from '../../directory/template.js';
import { CSV_TYPES, writeCsv } from '../../shared/csv.js';
import type { SpreadsheetReader } from '../../shared/sheets.js';
import { writeXlsx, XLSX_TYPE } from '../../shared/xlsx.js';
import { errorResponses, HttpError } from '../errors.js';

const TEMPLATE_BODY_LIMIT = 10 * 1024 * 1024;
/** Rows one import may hold (a large site: 2,000 apartments, 5,000 residents, in one file). */
const MAX_TEMPLATE_ROWS = 20_000;

const importResultSchema = z.object({
  created: z.object({ devices: z.number().int().describe('devices made from MAC library entries named in the Device column'), buildings: z.number().int(), apartments: z.number().int(), residents: z.number().int(), placements: z.number().int() }),
  updated: z.number().int().describe('apartments whose name, web relay or floor changed'),
  skipped: z.number().int().describe('rows already in the directory'),
  invalid: z.array(z.object({ line: z.number().int(), column: z.string().nullable(), value: z.string(), reason: z.string() })),
  ignoredColumns: z.array(z.string()).describe('columns of the file this service does not model (e.g. CallType, Analog Handset)'),
});
const formatQuery = z.strictObject({ format: z.enum(['csv', 'xlsx']).default('csv') });

export const siteTemplateRoutes: FastifyPluginAsyncZod<{ directory: DirectoryService; spreadsheets: SpreadsheetReader }> = async (app, { directory, spreadsheets }) => {
  const tags = ['directory'];
  app.addContentTypeParser([...CSV_TYPES, XLSX_TYPE], { parseAs: 'buffer', bodyLimit: TEMPLATE_BODY_LIMIT }, (_req, body, done) => done(null, body));

  const send = async (reply: { header(k: string, v: string): unknown; send(b: unknown): unknown }, name: string, format: 'csv' | 'xlsx', rows: string[][]) => {
    reply.header('content-disposition', `attachment; filename="${name}.${format}"`);
    if (format === 'xlsx') {
      reply.header('content-type', XLSX_TYPE);
      return reply.send(await writeXlsx('Residents', rows));
    }
    reply.header('content-type', 'text/csv; charset=utf-8');
    return reply.send(writeCsv(rows));
  };

  app.get(
    '/sites/import-template',
    {
      schema: {
        tags,
        summary: 'The blank resident template: the header row and one sample row (CSV or .xlsx)',
        querystring: formatQuery,
        response: { 200: z.any().describe('text/csv or .xlsx'), ...errorResponses(400) },
      },
    },
    async (request, reply) => send(reply, 'resident-template', request.query.format, [[...TEMPLATE_COLUMNS], SAMPLE_ROW]),
  );

  app.post(
    '/sites/:siteId/import',
    {
      bodyLimit: TEMPLATE_BODY_LIMIT,
      schema: {
        tags,
        summary: "Import the portal's resident template (CSV with `,` or `;`, or .xlsx) into a site, in one transaction",
        description:
          'Columns: Building, Accessible Floors, Apt, AptName, Device (`Name,Type,MAC;…`: indoor monitors (2) and single-tenant door phones (1) placed in the apartment, multi-tenant door phones (0), guard phones (3) and access terminals (50) in its building (the export writes them on the building\'s first row); a MAC in the site installer\'s MAC library with no device yet becomes a device of that name and type, with a SIP account and the defaults of POST /devices; a MAC not in that library, placed in two apartments, or of another type is a fault of its line), FirstName, LastName, Email, MobileNumber, TelephoneCallingCode, 1stPhone–3rdPhone, Web Relay ID. Any faulty row refuses the file: 400 `template_invalid` lists every fault (line, column, value, reason) and nothing is written. Rows already in the directory are skipped. Names (Building, AptName, FirstName, LastName) must not begin with `=`, `+`, `-` or `@`: such a cell is refused as a fault of its line and column, like any other (a spreadsheet would run it as a formula); a cell written `\'=…` or `\'+…` (the export\'s escape) reads without its `\'`, so an export imports back. The file is read in a worker thread within configured bounds: an .xlsx is measured before it is parsed (SPREADSHEET_MAX_UNZIPPED_BYTES for the whole, SPREADSHEET_MAX_PART_BYTES per part, checked against the real inflated bytes, not the zip headers), either format within SPREADSHEET_MAX_CELLS cells and SPREADSHEET_DEADLINE_MS; beyond them 413 `spreadsheet_too_large` with `details.limit` and `details.found`. A malformed file is 400 `csv_invalid` or `xlsx_invalid` in this service\'s words (never the parser\'s); 503 `spreadsheet_busy` while too many files are being read.',
        params: siteParams,
        response: { 200: importResultSchema, ...errorResponses(400, 404, 409, 413, 415, 503) },
      },
    },
    async (request) => {
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const body = request.body;
      if (!Buffer.isBuffer(body)) throw new HttpError(415, 'unsupported_media_type', `send the template as text/csv or ${XLSX_TYPE}, not ${type || 'no content type'}`);
      const sheet = await spreadsheets.read(type === XLSX_TYPE ? 'xlsx' : 'csv', body, MAX_TEMPLATE_ROWS + 1);
      if (sheet.length > MAX_TEMPLATE_ROWS + 1) throw new HttpError(400, 'too_many_rows', `at most ${MAX_TEMPLATE_ROWS} rows can be imported at once`, { maxRows: MAX_TEMPLATE_ROWS });
      return directory.templates.import(request.principal, request.params.siteId, sheet);
    },
  );

  app.get(
    '/sites/:siteId/export',
    {
      schema: {
        tags,
        summary: "A site's directory in the resident template's layout (CSV or .xlsx): it imports back to the same directory",
        description:
          "A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a leading `'` (in CSV and .xlsx alike), so a spreadsheet program shows it as text and never runs it as a formula (e.g. the calling code `'+49`); the import takes that `'` off again.",
        params: siteParams,
        querystring: formatQuery,
        response: { 200: z.any().describe('text/csv or .xlsx'), ...errorResponses(400, 404) },
      },
    },
    async (request, reply) => send(reply, `site-${request.params.siteId}`, request.query.format, await directory.templates.export(request.principal, request.params.siteId)),
  );
};
