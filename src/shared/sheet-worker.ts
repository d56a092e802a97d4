import { parentPort } from 'node:worker_threads';
import { readCsv } from './csv.js';
import { DomainError } from './errors.js';
import type { SheetJob, SheetOutcome } from './sheets.js';
import { readXlsx } from './xlsx.js';

// Spreadsheets, one at a time, read in a worker thread (sheets.ts): the parse never holds the service's
// event loop, and the worker's heap limit bounds what a hostile file can make it allocate.

async function read(job: SheetJob): Promise<SheetOutcome> {
  try {
    const body = typeof job.body === 'string' ? job.body : Buffer.from(job.body.buffer, job.body.byteOffset, job.body.byteLength);
    const rows = job.kind === 'xlsx' ? await readXlsx(body as Buffer, job.maxRows, job.limits) : readCsv(body, job.maxRows, job.limits.maxCells);
    return { ok: true, rows };
  } catch (err) {
    if (err instanceof DomainError) {
      const cause = err.cause instanceof Error ? err.cause.message.slice(0, 500) : undefined;
      return { ok: false, error: { kind: err.kind, code: err.code, message: err.message, details: err.details }, ...(cause && { internal: cause }) };
    }
    // The library's own text stays here (the parent logs it); the caller gets the stable code.
    return { ok: false, error: { kind: 'invalid', code: `${job.kind}_invalid`, message: job.kind === 'xlsx' ? 'the file is not a readable .xlsx workbook' : 'the file is not valid CSV', details: null }, internal: String((err as Error)?.message ?? err).slice(0, 500) };
  }
}

parentPort!.on('message', (job: SheetJob) => void read(job).then((outcome) => parentPort!.postMessage(outcome)));
