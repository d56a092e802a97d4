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

/** What a guarded stream carries: its guard, the read() it had, and whom to tell of a violation. */
const GUARD = Symbol('frame guard');
type Guarded = Duplex & { [GUARD]: { guard: FrameLengthGuard; read: Duplex['read']; onViolation: (stream: Duplex, declaredLength: number) => void } };

/** The one read() of every guarded stream (no closure per connection: held sessions are the gateway's memory). */
function guardedRead(this: Guarded, size?: number) {
  const { guard, read, onViolation } = this[GUARD];
  const chunk = read.call(this, size) as Buffer | null;
  if (chunk && Buffer.isBuffer(chunk)) {
    const bad = guard.feed(chunk);
    if (bad >= 0) {
      onViolation(this, bad);
      this.destroy();
      return null;
    }
  }
  return chunk;
}

/** Wraps the stream's read() (which the broker calls) so every chunk passes the guard first. */
export function guardFrames(stream: Duplex, maxRemainingLength: number, onViolation: (stream: Duplex, declaredLength: number) => void): void {
  (stream as Guarded)[GUARD] = { guard: new FrameLengthGuard(maxRemainingLength), read: stream.read, onViolation };
  stream.read = guardedRead;
}
