import { createInflateRaw } from 'node:zlib';
import { badRequest, tooLarge } from './errors.js';

// An .xlsx is a zip. Before a spreadsheet library inflates it, its central directory is read here and
// every part inflated once with a byte counter: a part that unzips past its limit, or past what its
// header declared (a lying header), is refused after at most `limit` bytes of output.

export interface ZipLimits {
  /** Decompressed bytes of the whole archive. */
  maxUnzippedBytes: number;
  /** Decompressed bytes of any one part (e.g. xl/worksheets/sheet1.xml). */
  maxPartBytes: number;
  /** Parts in the archive. */
  maxEntries: number;
}

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  /** What the central directory declares; checked against the real output by `inflateEntries`. */
  size: number;
  /** Offset of the part's local header. */
  localOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const ZIP64_MARK = 0xffffffff;

const notAZip = (why: string) => badRequest('xlsx_invalid', `the file is not a readable .xlsx workbook (${why})`);
const mib = (n: number) => `${(n / 1048576).toFixed(n < 1048576 ? 2 : 1)} MiB`;

/** Reads the central directory and refuses, from the declared sizes alone, an archive over the limits. */
export function readZipDirectory(zip: Buffer, limits: ZipLimits): ZipEntry[] {
  // The end record is in the last 22 + 65,535 (comment) bytes.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw notAZip('no zip directory');
  const count = zip.readUInt16LE(eocd + 10);
  const dirSize = zip.readUInt32LE(eocd + 12);
  const dirOffset = zip.readUInt32LE(eocd + 16);
  if (count === 0xffff || dirOffset === ZIP64_MARK) throw tooLarge('spreadsheet_too_large', 'the workbook is a ZIP64 archive; an .xlsx this service reads is far smaller', { limit: limits.maxUnzippedBytes });
  if (count > limits.maxEntries) throw tooLarge('spreadsheet_too_large', `the workbook has ${count} parts; at most ${limits.maxEntries} are read`, { limit: limits.maxEntries, found: count, unit: 'parts' });
  if (dirOffset + dirSize > eocd) throw notAZip('a damaged zip directory');

  const entries: ZipEntry[] = [];
  let total = 0;
  let p = dirOffset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > eocd || zip.readUInt32LE(p) !== CENTRAL) throw notAZip('a damaged zip directory');
    const nameLength = zip.readUInt16LE(p + 28);
    const entry: ZipEntry = {
      method: zip.readUInt16LE(p + 10),
      compressedSize: zip.readUInt32LE(p + 20),
      size: zip.readUInt32LE(p + 24),
      localOffset: zip.readUInt32LE(p + 42),
      name: zip.toString('utf8', p + 46, Math.min(p + 46 + nameLength, eocd)),
    };
    p += 46 + nameLength + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
    if (entry.size === ZIP64_MARK || entry.compressedSize === ZIP64_MARK || entry.localOffset === ZIP64_MARK) {
      throw tooLarge('spreadsheet_too_large', `the part ${entry.name.slice(0, 100)} is a ZIP64 entry (4 GiB or more)`, { limit: limits.maxPartBytes, part: entry.name.slice(0, 100) });
    }
    if (entry.method !== 0 && entry.method !== 8) throw notAZip(`part compressed with method ${entry.method}`);
    checkPart(entry.name, entry.size, limits);
    total += entry.size;
    checkTotal(total, limits);
    entries.push(entry);
  }
  return entries;
}

function checkPart(name: string, size: number, limits: ZipLimits, more = false) {
  if (size > limits.maxPartBytes) {
    throw tooLarge('spreadsheet_too_large', `the part ${name.slice(0, 100)} unzips to ${more ? 'more than ' : ''}${mib(size)}; at most ${mib(limits.maxPartBytes)} per part (SPREADSHEET_MAX_PART_BYTES)`, {
      limit: limits.maxPartBytes,
      found: size,
      part: name.slice(0, 100),
    });
  }
}

function checkTotal(total: number, limits: ZipLimits, more = false) {
  if (total > limits.maxUnzippedBytes) {
    throw tooLarge('spreadsheet_too_large', `the workbook unzips to ${more ? 'more than ' : ''}${mib(total)}; at most ${mib(limits.maxUnzippedBytes)} (SPREADSHEET_MAX_UNZIPPED_BYTES)`, {
      limit: limits.maxUnzippedBytes,
      found: total,
    });
  }
}

/** Where a part's compressed bytes are, from its local header (which may differ from the directory's view). */
function compressedData(zip: Buffer, entry: ZipEntry): Buffer {
  const at = entry.localOffset;
  if (at + 30 > zip.length || zip.readUInt32LE(at) !== LOCAL) throw notAZip('a damaged part header');
  const start = at + 30 + zip.readUInt16LE(at + 26) + zip.readUInt16LE(at + 28);
  if (start + entry.compressedSize > zip.length) throw notAZip('a truncated part');
  return zip.subarray(start, start + entry.compressedSize);
}

/**
 * Inflates every part once, counting its output: `onChunk` sees each decompressed chunk (the worksheet's
 * cells are counted there). Stops at the first part that outgrows its declared size or a limit.
 */
export async function inflateEntries(zip: Buffer, entries: ZipEntry[], limits: ZipLimits, onChunk: (entry: ZipEntry, chunk: Buffer) => void): Promise<void> {
  let total = 0;
  for (const entry of entries) {
    const data = compressedData(zip, entry);
    if (entry.method === 0) {
      if (data.length !== entry.size) throw notAZip('a stored part whose size differs from its header');
      total += data.length;
      checkTotal(total, limits);
      onChunk(entry, data);
      continue;
    }
    let produced = 0;
    await new Promise<void>((resolve, reject) => {
      const inflate = createInflateRaw();
      const fail = (err: Error) => {
        inflate.destroy();
        reject(err);
      };
      inflate.on('data', (chunk: Buffer) => {
        produced += chunk.length;
        total += chunk.length;
        try {
          if (produced > entry.size) throw notAZip(`the part ${entry.name.slice(0, 100)} unzips to more than its header declares`);
          checkPart(entry.name, produced, limits, true);
          checkTotal(total, limits, true);
          onChunk(entry, chunk);
        } catch (err) {
          fail(err as Error);
        }
      });
      inflate.on('error', () => fail(notAZip(`the part ${entry.name.slice(0, 100)} is damaged`)));
      inflate.on('end', () => (produced === entry.size ? resolve() : fail(notAZip(`the part ${entry.name.slice(0, 100)} is shorter than its header declares`))));
      inflate.end(data);
    });
  }
}
