import { constants, crc32, deflateRawSync, inflateRawSync } from 'node:zlib';

// Zip archives built byte by byte, so a test can make what a hostile uploader makes: a part that unzips
// to 149 MB from a few hundred KB, or a header that lies about a part's size.

export interface ZipPart {
  name: string;
  /** Deflated bytes (method 8) and what the headers declare about them. */
  deflated: Buffer;
  size: number;
  crc: number;
}

export const part = (name: string, content: Buffer | string): ZipPart => {
  const raw = Buffer.from(content);
  return { name, deflated: deflateRawSync(raw), size: raw.length, crc: crc32(raw) };
};

/**
 * A part whose content is `unit` repeated until `bytes`: `unit` is deflated once with a full flush (the
 * block stands alone), that block is repeated, and an empty final block ends the stream. Cheap to make
 * at any size: 149 MB of XML costs the test a few hundred KB of Buffer.concat.
 */
export function repeatedPart(name: string, unit: string, bytes: number, declaredSize?: number, prefix = '', suffix = ''): ZipPart {
  const chunk = Buffer.from(unit.repeat(Math.max(1, Math.floor((1 << 20) / unit.length))));
  const block = deflateRawSync(chunk, { finishFlush: constants.Z_FULL_FLUSH, level: 9 });
  const head = deflateRawSync(prefix, { finishFlush: constants.Z_FULL_FLUSH });
  const copies = Math.max(1, Math.round(bytes / chunk.length));
  const size = prefix.length + copies * chunk.length + suffix.length;
  const deflated = Buffer.concat([head, ...Array.from({ length: copies }, () => block), deflateRawSync(suffix)]);
  // The true checksum when the header tells the truth (a library that checks it then reads the part).
  let crc = crc32(prefix);
  if (declaredSize === undefined) for (let i = 0; i < copies; i++) crc = crc32(chunk, crc);
  return { name, deflated, size: declaredSize ?? size, crc: crc32(suffix, crc) };
}

/** The parts of an archive (e.g. a workbook writeXlsx made), to rebuild it with one part replaced. */
export function partsOf(zip: Buffer): ZipPart[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  const parts: ZipPart[] = [];
  for (let i = 0; i < count; i++) {
    const method = zip.readUInt16LE(p + 10);
    const csize = zip.readUInt32LE(p + 20);
    const nameLength = zip.readUInt16LE(p + 28);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLength);
    p += 46 + nameLength + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + csize);
    parts.push(part(name, method === 8 ? inflateRawSync(data) : data));
  }
  return parts;
}

/** Writes the archive: local headers and data, then the central directory and its end record. */
export function zipOf(parts: ZipPart[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const p of parts) {
    const name = Buffer.from(p.name);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(20, 4);
    header.writeUInt16LE(8, 8);
    header.writeUInt32LE(p.crc >>> 0, 14);
    header.writeUInt32LE(p.deflated.length, 18);
    header.writeUInt32LE(p.size, 22);
    header.writeUInt16LE(name.length, 26);
    locals.push(header, name, p.deflated);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4);
    entry.writeUInt16LE(20, 6);
    entry.writeUInt16LE(8, 10);
    entry.writeUInt32LE(p.crc >>> 0, 16);
    entry.writeUInt32LE(p.deflated.length, 20);
    entry.writeUInt32LE(p.size, 24);
    entry.writeUInt16LE(name.length, 28);
    entry.writeUInt32LE(offset, 42);
    central.push(entry, name);
    offset += 30 + name.length + p.deflated.length;
  }
  const dir = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(parts.length, 8);
  end.writeUInt16LE(parts.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

/**
 * A workbook (from writeXlsx) whose first worksheet is replaced by `sheet`; `last` moves it to the end of
 * the archive (a reader that parses parts in order then has nothing left to do once the sheet is read).
 */
export function withSheet(workbook: Buffer, sheet: ZipPart, { last = false } = {}): Buffer {
  const parts = partsOf(workbook).filter((p) => !last || p.name !== 'xl/worksheets/sheet1.xml');
  const replaced = { ...sheet, name: 'xl/worksheets/sheet1.xml' };
  return zipOf(last ? [...parts, replaced] : parts.map((p) => (p.name === replaced.name ? replaced : p)));
}
