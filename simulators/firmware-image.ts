import { createHash } from 'node:crypto';

/**
 * A deterministic stand-in for a vendor firmware image: a readable header naming model and version,
 * then pseudo-random bytes (SHA-256 in counter mode) up to `size`, so every image hashes differently.
 */
export function firmwareImage(model: string, version: string, size: number): Buffer {
  const image = Buffer.alloc(size);
  const header = Buffer.from(`INTERCOM-FIRMWARE model=${model} version=${version}\n`);
  header.copy(image, 0, 0, Math.min(header.length, size));
  for (let offset = header.length, block = 0; offset < size; block++) {
    const bytes = createHash('sha256').update(`${model}/${version}/${block}`).digest();
    offset += bytes.copy(image, offset, 0, Math.min(bytes.length, size - offset));
  }
  return image;
}
