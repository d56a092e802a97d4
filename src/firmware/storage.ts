import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tooLarge } from '../shared/errors.js';

export interface ReceivedImage {
  path: string;
  size: number;
  sha256: string;
}

/**
 * Firmware images on disk under DATA_DIR/firmware. Uploads stream into a temporary file while being
 * hashed and counted, so no image is ever held in memory; a finished upload is renamed into place.
 */
export class FirmwareStorage {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'firmware');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // Uploads cut off by a crash or restart are never finished: start with an empty incoming folder.
    await rm(join(this.dir, 'incoming'), { recursive: true, force: true });
    await mkdir(join(this.dir, 'incoming'), { recursive: true });
  }

  imagePath(id: string): string {
    return join(this.dir, `${id}.bin`);
  }

  /** Streams an upload to a temporary file; over `maxBytes` it stops reading and answers 413. */
  async receive(source: Readable, maxBytes: number): Promise<ReceivedImage> {
    const path = join(this.dir, 'incoming', `${randomUUID()}.part`);
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(tooLarge('payload_too_large', `the firmware image is larger than ${maxBytes} bytes`, { maxBytes }));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(path, { flags: 'wx' }));
      // A stream cut off by the upload limit ends early instead of failing; treat it as too large.
      if ((source as Readable & { truncated?: boolean }).truncated) throw tooLarge('payload_too_large', `the firmware image is larger than ${maxBytes} bytes`, { maxBytes });
    } catch (err) {
      await rm(path, { force: true });
      throw err;
    }
    return { path, size, sha256: hash.digest('hex') };
  }

  async keep(received: ReceivedImage, id: string): Promise<void> {
    await rename(received.path, this.imagePath(id));
  }

  async discard(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  async remove(id: string): Promise<void> {
    await rm(this.imagePath(id), { force: true });
  }

  async size(id: string): Promise<number | null> {
    return stat(this.imagePath(id)).then((s) => s.size, () => null);
  }

  /** A byte range of an image, streamed from disk (end inclusive). */
  read(id: string, start: number, end: number): Readable {
    return createReadStream(this.imagePath(id), { start, end, highWaterMark: 64 * 1024 });
  }
}
