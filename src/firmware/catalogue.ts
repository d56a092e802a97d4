import { randomUUID } from 'node:crypto';
import { hasControlCharacters } from '../shared/text.js';
import { and, count, desc, eq, sql } from 'drizzle-orm';
import type { Readable } from 'node:stream';
import type { Principal } from '../accounts/service.js';
import type { Db } from '../db/client.js';
import { deviceHasUnfinishedJob } from '../provisioning/service.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import { normalizeModel, versionMismatch } from './models.js';
import { firmwareUploadFields, type FirmwareView } from './schemas.js';
import type { FirmwareStorage, ReceivedImage } from './storage.js';
import { firmware, upgrades } from './tables.js';
import { UPGRADE_STATUS } from './upgrades.js';

type FirmwareRow = typeof firmware.$inferSelect;

export const firmwareView = (f: FirmwareRow): FirmwareView => ({
  id: f.id,
  model: f.model,
  version: f.version,
  changelog: f.changelog,
  size: f.size,
  sha256: f.sha256,
  createdAt: f.createdAt.toISOString(),
});

/** One part of a multipart upload, as the API hands it over: a text field or the file's stream. */
export type UploadPart = { kind: 'field'; name: string; value: string } | { kind: 'file'; name: string; fileName: string; stream: Readable };

/** The firmware catalogue: images per model and version, stored on disk, verified by SHA-256. */
export class FirmwareCatalogue {
  constructor(
    private readonly db: Db,
    private readonly storage: FirmwareStorage,
    private readonly maxImageBytes: number,
  ) {}

  async list(q: { model?: string; page: number; pageSize: number }): Promise<Page<FirmwareView>> {
    const where = q.model ? eq(firmware.model, normalizeModel(q.model)) : undefined;
    return paginate(
      this.db
        .select()
        .from(firmware)
        .where(where)
        .orderBy(desc(firmware.createdAt))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(firmware).where(where),
      firmwareView,
      q.page,
      q.pageSize,
    );
  }

  async row(id: string): Promise<FirmwareRow> {
    const rows = await this.db.select().from(firmware).where(eq(firmware.id, id)).limit(1);
    if (!rows[0]) throw notFound('firmware', { firmwareId: id });
    return rows[0];
  }

  async get(id: string): Promise<FirmwareView> {
    return firmwareView(await this.row(id));
  }

  /**
   * Takes an upload part by part: text fields are collected, the file streams to disk while hashed.
   * Anything wrong removes the file again, so a refused upload leaves nothing behind.
   */
  async upload(principal: Principal, parts: AsyncIterable<UploadPart>): Promise<FirmwareView> {
    const fields: Record<string, string> = {};
    let received: ReceivedImage | null = null;
    let fileName = '';
    try {
      for await (const part of parts) {
        if (part.kind === 'field') {
          if (!['model', 'version', 'changelog'].includes(part.name)) throw badRequest('validation_error', `unknown field ${part.name}`, { field: part.name });
          fields[part.name] = part.value;
          continue;
        }
        if (part.name !== 'file' || received) {
          part.stream.resume();
          throw badRequest('validation_error', 'exactly one file, in the part named "file"', { field: part.name });
        }
        fileName = part.fileName;
        if (!fileName || /[\\/]|^\.|\.\./.test(fileName) || hasControlCharacters(fileName) || fileName.length > 255) {
          part.stream.resume();
          throw badRequest('invalid_file_name', `the file name ${JSON.stringify(fileName)} must be a plain name, not a path`, { fileName });
        }
        received = await this.storage.receive(part.stream, this.maxImageBytes);
      }
      if (!received) throw badRequest('validation_error', 'the firmware image is missing (a part named "file")');
      if (received.size === 0) throw badRequest('empty_file', 'the firmware image is empty');
      const parsed = firmwareUploadFields.safeParse(fields);
      if (!parsed.success) {
        const issues = parsed.error.issues.map((i) => ({ in: 'body', path: i.path.join('.'), message: i.message }));
        throw badRequest('validation_error', issues.map((i) => `body.${i.path}: ${i.message}`).join('; '), { issues });
      }
      const model = normalizeModel(parsed.data.model);
      const mismatch = versionMismatch(model, parsed.data.version);
      if (mismatch) throw badRequest('version_model_mismatch', mismatch, { model, version: parsed.data.version });
      // The image is in place before its row exists: a catalogue row always has its file, and a crash in
      // between leaves at most a file without a row.
      const id = randomUUID();
      const image = received;
      await this.storage.keep(image, id);
      received = null;
      try {
        const [row] = await this.db
          .insert(firmware)
          .values({ id, model, version: parsed.data.version, changelog: parsed.data.changelog, size: image.size, sha256: image.sha256, fileName, uploadedBy: principal.accountId })
          .onConflictDoNothing()
          .returning();
        if (!row) throw conflict('firmware_exists', `firmware ${parsed.data.version} for ${model} is already in the catalogue`, { model, version: parsed.data.version });
        return firmwareView(row);
      } catch (err) {
        await this.storage.remove(id);
        throw err;
      }
    } finally {
      if (received) await this.storage.discard(received.path);
    }
  }

  /** Deletes firmware no pending or running upgrade needs; finished upgrade records keep model and version. */
  async delete(id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.select({ id: firmware.id }).from(firmware).where(eq(firmware.id, id)).for('update');
      if (!rows[0]) throw notFound('firmware', { firmwareId: id });
      const users = await tx
        .select({ id: upgrades.id })
        .from(upgrades)
        .where(and(eq(upgrades.firmwareId, id), sql`${UPGRADE_STATUS} <> 'executed'`));
      if (users.length) throw conflict('firmware_in_use', `firmware ${id} is used by ${users.length} unfinished upgrade(s)`, { upgradeIds: users.map((u) => u.id) });
      await tx.delete(firmware).where(eq(firmware.id, id));
    });
    await this.storage.remove(id);
  }

  /**
   * The firmware a device asks to download, and whether it may: only while it has an unfinished upgrade
   * to it. One query per download request.
   */
  async forDownload(mac: string, id: string): Promise<{ firmware: FirmwareRow; allowed: boolean } | null> {
    const rows = await this.db
      .select({ firmware, allowed: sql<boolean>`${deviceHasUnfinishedJob(mac, 'upgrade', 'firmwareId', id)}` })
      .from(firmware)
      .where(eq(firmware.id, id))
      .limit(1);
    return rows[0] ?? null;
  }

  async hasImage(id: string): Promise<boolean> {
    return (await this.storage.size(id)) !== null;
  }

  /** A byte range of the image from disk, or null when its file is missing (DATA_DIR lost or tampered with). */
  async readImage(id: string, start: number, end: number): Promise<Readable | null> {
    if ((await this.storage.size(id)) === null) return null;
    return this.storage.read(id, start, end);
  }
}

