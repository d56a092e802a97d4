import { channel } from 'node:diagnostics_channel';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { SheetRow } from './csv.js';
import { DomainError, type DomainErrorKind, tooLarge, unavailable } from './errors.js';
import type { XlsxLimits } from './xlsx.js';
import { readZipDirectory } from './zip.js';

// Spreadsheet uploads (resident templates, MAC lists) are read off the event loop: each file in a worker
// thread of a small pool, at most `workers` at once, each with a heap limit and a deadline. A file that is too big, too
// slow or hostile fails its own import; MQTT, SIP's back end and the other requests keep their loop.

export interface SpreadsheetLimits {
  /** Decompressed bytes of a whole .xlsx, and of any one part of it. */
  maxUnzippedBytes: number;
  maxPartBytes: number;
  /** Cells of one file (all worksheets of a workbook). */
  maxCells: number;
  /** Heap of one reading worker (V8 old generation), in MiB. */
  workerMemoryMb: number;
  /** How long one file may take to read. */
  deadlineMs: number;
  /** Files read at once; more wait, and beyond 8 waiting per worker an upload is answered 503. */
  workers: number;
}

/** Parts of an .xlsx: a workbook has about a dozen, plus one per sheet, image or comment. */
const MAX_PARTS = 1000;

export const DEFAULT_SPREADSHEET_LIMITS: SpreadsheetLimits = {
  maxUnzippedBytes: 48 * 1024 * 1024,
  maxPartBytes: 32 * 1024 * 1024,
  maxCells: 1_000_000,
  workerMemoryMb: 256,
  deadlineMs: 30_000,
  workers: 2,
};

/** What the worker is given, and what it answers. */
export interface SheetJob {
  kind: 'csv' | 'xlsx';
  body: string | Uint8Array;
  maxRows: number;
  limits: XlsxLimits;
}
export type SheetOutcome =
  | { ok: true; rows: SheetRow[] }
  | { ok: false; error: { kind: DomainErrorKind; code: string; message: string; details: unknown }; internal?: string };

// Tests and `npm run dev` run this file as TypeScript (tsx), production as compiled JS in dist/: the
// worker is the sibling file with the same extension. Node 20 does not carry tsx's loader (--import) into
// a worker thread, so a .ts worker starts from a line that registers tsx, then imports the file.
const extension = extname(fileURLToPath(import.meta.url));
const workerFile = new URL(`./sheet-worker${extension}`, import.meta.url);
const workerEntry: [URL | string, { eval?: boolean }] =
  extension === '.ts'
    ? [`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(workerFile.href)}); });`, { eval: true }]
    : [workerFile, {}];

/** Published when a worker takes a file ({ kind, bytes }): what is being read off the event loop, now. */
export const SPREADSHEET_READING_CHANNEL = 'intercom:spreadsheets:reading';
const reading = channel(SPREADSHEET_READING_CHANNEL);

/** How long an idle worker is kept for the next file before its thread (and heap) is given back. */
const IDLE_MS = 30_000;

export class SpreadsheetReader {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly idle: { worker: Worker; timer: NodeJS.Timeout; gone: () => void }[] = [];
  private readonly fileLimits: XlsxLimits;
  private closed = false;

  constructor(
    private readonly limits: SpreadsheetLimits = DEFAULT_SPREADSHEET_LIMITS,
    /** Hears a parser's own error text, which never reaches the caller. */
    private readonly onParserError: (text: string) => void = () => {},
  ) {
    this.fileLimits = { maxUnzippedBytes: limits.maxUnzippedBytes, maxPartBytes: limits.maxPartBytes, maxCells: limits.maxCells, maxEntries: MAX_PARTS };
  }

  /** The file's rows, read in a worker; refusals are DomainErrors with stable codes. */
  async read(kind: 'csv' | 'xlsx', body: string | Buffer, maxRows: number): Promise<SheetRow[]> {
    // The declared sizes cost nothing to check here: an honest bomb is refused before any worker starts.
    if (kind === 'xlsx' && typeof body !== 'string') readZipDirectory(body, this.fileLimits);
    await this.slot();
    try {
      return await this.inWorker({ kind, body, maxRows, limits: this.fileLimits });
    } finally {
      this.release();
    }
  }

  /** Ends the idle workers (a running one ends with its file, within the deadline). */
  close() {
    this.closed = true;
    for (const { worker, timer, gone } of this.idle.splice(0)) {
      clearTimeout(timer);
      worker.off('exit', gone);
      void worker.terminate();
    }
  }

  private async slot(): Promise<void> {
    if (this.active < this.limits.workers) {
      this.active++;
      return;
    }
    if (this.waiting.length >= this.limits.workers * 8) throw unavailable('spreadsheet_busy', 'too many spreadsheets are being read; try again in a few seconds');
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  private worker(): Worker {
    const kept = this.idle.pop();
    if (kept) {
      clearTimeout(kept.timer);
      kept.worker.off('exit', kept.gone);
      kept.worker.ref();
      return kept.worker;
    }
    const worker = new Worker(workerEntry[0], { ...workerEntry[1], resourceLimits: { maxOldGenerationSizeMb: this.limits.workerMemoryMb } });
    // An error outside a file's reading (idle, or after its answer) ends that worker, never the service.
    worker.on('error', () => {});
    return worker;
  }

  /** A worker that read its file cleanly waits for the next one; any other ends. */
  private keep(worker: Worker) {
    if (this.closed || this.idle.length >= this.limits.workers) return void worker.terminate();
    worker.unref();
    const drop = () => {
      const i = this.idle.indexOf(entry);
      if (i >= 0) this.idle.splice(i, 1);
      clearTimeout(entry.timer);
    };
    const entry = {
      worker,
      gone: drop,
      timer: setTimeout(() => {
        drop();
        worker.off('exit', drop);
        void worker.terminate();
      }, IDLE_MS).unref(),
    };
    // A worker that dies while idle leaves the pool instead of taking the next file with it.
    worker.once('exit', drop);
    this.idle.push(entry);
  }

  private inWorker(job: SheetJob): Promise<SheetRow[]> {
    return new Promise((resolve, reject) => {
      const worker = this.worker();
      let settled = false;
      const finish = (fn: () => void, reusable = false) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
        if (reusable) this.keep(worker);
        else void worker.terminate();
        fn();
      };
      const deadline = setTimeout(
        () => finish(() => reject(tooLarge('spreadsheet_too_large', `reading the file took longer than ${this.limits.deadlineMs / 1000} s (SPREADSHEET_DEADLINE_MS); split it into smaller files`, { limit: this.limits.deadlineMs, unit: 'ms' }))),
        this.limits.deadlineMs,
      );
      const onMessage = (outcome: SheetOutcome) =>
        finish(() => {
          if (outcome.ok) return resolve(outcome.rows);
          if (outcome.internal) this.onParserError(outcome.internal);
          reject(new DomainError(outcome.error.kind, outcome.error.code, outcome.error.message, outcome.error.details));
        }, outcome.ok || !outcome.internal);
      const onError = (err: Error & { code?: string }) =>
        finish(() => {
          if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') {
            return reject(tooLarge('spreadsheet_too_large', `reading the file needs more than ${this.limits.workerMemoryMb} MiB (SPREADSHEET_WORKER_MEMORY_MB); split it into smaller files`, { limit: this.limits.workerMemoryMb, unit: 'MiB' }));
          }
          this.onParserError(String(err.message).slice(0, 500));
          reject(new Error('the spreadsheet reader failed'));
        });
      const onExit = (code: number) => finish(() => reject(new Error(`the spreadsheet reader stopped (exit ${code})`)));
      worker.on('message', onMessage).on('error', onError).on('exit', onExit);
      worker.postMessage(job);
      if (reading.hasSubscribers) reading.publish({ kind: job.kind, bytes: typeof job.body === 'string' ? Buffer.byteLength(job.body) : job.body.byteLength });
    });
  }
}
