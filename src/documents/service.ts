import { createHash } from 'node:crypto';
import type { Database, Statement } from '../db/client.js';

/** How many documents of one name a device may still fetch: the current one and a few before it. */
const KEPT_PER_NAME = 4;

export interface StoredDocument {
  sha256: string;
  mediaType: string;
  size: number;
  body: Buffer;
}

const st = {
  put: {
    name: 'documents_put',
    text: `WITH doc AS (
        INSERT INTO documents (sha256, media_type, size, body) VALUES ($1, $2, $3, $4)
        ON CONFLICT (sha256) DO UPDATE SET created_at = now()
      ), link AS (
        INSERT INTO device_documents (mac, sha256, name) VALUES ($5, $1, $6)
        ON CONFLICT (mac, sha256) DO UPDATE SET name = excluded.name, created_at = now()
      )
      SELECT 1`,
  },
  link: {
    name: 'documents_link',
    text: `INSERT INTO device_documents (mac, sha256, name) VALUES ($1, $2, $3)
      ON CONFLICT (mac, sha256) DO UPDATE SET name = excluded.name, created_at = now()`,
  },
  prune: {
    name: 'documents_prune',
    text: `DELETE FROM device_documents d WHERE d.mac = $1 AND d.name = $2 AND d.sha256 NOT IN (
        SELECT k.sha256 FROM device_documents k WHERE k.mac = $1 AND k.name = $2 ORDER BY k.created_at DESC LIMIT $3)`,
  },
  forDevice: {
    name: 'documents_for_device',
    text: `SELECT d.sha256, d.media_type, d.size, d.body FROM documents d
      JOIN device_documents l ON l.sha256 = d.sha256 WHERE l.mac = $1 AND d.sha256 = $2`,
  },
  // Only documents untouched for an hour: one being linked right now is never swept from under its link.
  sweep: {
    name: 'documents_sweep',
    text: `DELETE FROM documents d WHERE d.created_at < now() - interval '1 hour'
      AND NOT EXISTS (SELECT 1 FROM device_documents l WHERE l.sha256 = d.sha256)`,
  },
  forget: { name: 'documents_forget_device', text: 'DELETE FROM device_documents WHERE mac = $1' },
} satisfies Record<string, Statement>;

/**
 * Documents devices fetch over HTTP, named by the SHA-256 of their bytes: whatever is too large for an
 * MQTT command. A device may fetch only documents made for it; the bytes served are the bytes hashed.
 */
export class DocumentStore {
  constructor(private readonly database: Database) {}

  /** Stores a document for a device under a name (e.g. `config`), keeping the last few of that name. */
  async put(mac: string, name: string, mediaType: string, body: Buffer): Promise<{ sha256: string; size: number }> {
    const sha256 = createHash('sha256').update(body).digest('hex');
    await this.database.run(st.put, [sha256, mediaType, body.length, body, mac, name]);
    await this.database.run(st.prune, [mac, name, KEPT_PER_NAME]);
    return { sha256, size: body.length };
  }

  /**
   * Stores one document for several devices (the lists devices of one scope share): the bytes travel to
   * the database once, each device gets its link.
   */
  async putForAll(macs: string[], name: string, mediaType: string, body: Buffer): Promise<{ sha256: string; size: number }> {
    const [first, ...others] = macs;
    if (!first) throw new Error('putForAll needs at least one device');
    const stored = await this.put(first, name, mediaType, body);
    for (const mac of others) {
      await this.database.run(st.link, [mac, stored.sha256, name]);
      await this.database.run(st.prune, [mac, name, KEPT_PER_NAME]);
    }
    return stored;
  }

  async forDevice(mac: string, sha256: string): Promise<StoredDocument | null> {
    const rows = await this.database.run<{ sha256: string; media_type: string; size: number; body: Buffer | Uint8Array }>(st.forDevice, [mac, sha256]);
    const r = rows[0];
    return r ? { sha256: r.sha256, mediaType: r.media_type, size: r.size, body: Buffer.from(r.body) } : null;
  }

  /** A deleted device may fetch nothing any more (the documents themselves go with the next sweep). */
  async forgetDevice(mac: string): Promise<void> {
    await this.database.run(st.forget, [mac]);
  }

  /** Removes documents no device may fetch any more. */
  async sweep(): Promise<void> {
    await this.database.run(st.sweep, []);
  }
}
