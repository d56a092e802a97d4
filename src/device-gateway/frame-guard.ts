import type { Duplex } from 'node:stream';

/**
 * Tracks MQTT frame boundaries in the bytes the broker reads and rejects a frame whose declared length
 * exceeds the limit before its body is buffered: the packet parser would otherwise accumulate up to
 * 256 MB per connection. It costs a few numbers per connection, not an extra stream.
 */
export class FrameLengthGuard {
  private bodyLeft = 0;
  private inLength = false;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;

  constructor(private readonly maxRemainingLength: number) {}

  /** Returns the offending declared length, or -1 when the chunk is acceptable. */
  feed(chunk: Buffer): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const skip = Math.min(this.bodyLeft, chunk.length - i);
        i += skip;
        this.bodyLeft -= skip;
        continue;
      }
      if (!this.inLength) {
        // fixed header: packet type and flags
        this.inLength = true;
        this.length = 0;
        this.multiplier = 1;
        this.lengthBytes = 0;
        i++;
        continue;
      }
      const byte = chunk[i++]!;
      this.length += (byte & 0x7f) * this.multiplier;
      this.multiplier *= 128;
      this.lengthBytes++;
      if (this.length > this.maxRemainingLength) return this.length;
      if ((byte & 0x80) === 0) {
        this.inLength = false;
        this.bodyLeft = this.length;
      } else if (this.lengthBytes >= 4) {
        return Number.MAX_SAFE_INTEGER; // malformed remaining length
      }
    }
    return -1;
  }
}

/** Wraps the stream's read() (which the broker calls) so every chunk passes the guard first. */
export function guardFrames(stream: Duplex, maxRemainingLength: number, onViolation: (declaredLength: number) => void): void {
  const guard = new FrameLengthGuard(maxRemainingLength);
  const read = stream.read;
  stream.read = function guardedRead(this: Duplex, size?: number) {
    const chunk = read.call(this, size) as Buffer | null;
    if (chunk && Buffer.isBuffer(chunk)) {
      const bad = guard.feed(chunk);
      if (bad >= 0) {
        onViolation(bad);
        stream.destroy();
        return null;
      }
    }
    return chunk;
  };
}
