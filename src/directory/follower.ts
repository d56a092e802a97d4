import { EventEmitter } from 'node:events';
import { and, eq, inArray, lte, or, sql } from 'drizzle-orm';
import type { Database, Db, Statement } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import type { DocumentStore } from '../documents/service.js';
import { backoffDelay } from '../infra/backoff.js';
import type { Logger } from '../logger.js';
import { renderSite, type DeviceRender, type RenderedDocument, type SiteSnapshot } from './render.js';
import { apartments, buildings, credentials, directoryChanges, directoryRenders, placements, residents, sites } from './tables.js';

/** What the directory adds to a device's effective configuration: its site's time zone and its documents. */
export interface DirectoryPart {
  timeZone: string;
  documents: { name: string; sha256: string; size: number }[];
}

const renderOf: Statement = { name: 'directory_render_of', text: 'SELECT time_zone, documents FROM directory_renders WHERE mac = $1' };
const rendersOf: Statement = { name: 'directory_renders_of', text: 'SELECT mac, time_zone, documents FROM directory_renders WHERE mac = ANY($1::text[])' };

/** Reads what the directory last rendered for a device (one primary-key read per configuration render). */
export class DirectoryRenders {
  constructor(private readonly database: Database) {}

  async of(mac: string): Promise<DirectoryPart | null> {
    const rows = await this.database.run<{ time_zone: string; documents: DirectoryPart['documents'] }>(renderOf, [mac]);
    const r = rows[0];
    return r ? { timeZone: r.time_zone, documents: r.documents } : null;
  }

  /** `of` for many devices in one read (a batch of hellos); a device not placed is absent. */
  async ofMany(macs: string[]): Promise<Map<string, DirectoryPart>> {
    if (!macs.length) return new Map();
    const rows = await this.database.run<{ mac: string; time_zone: string; documents: DirectoryPart['documents'] }>(rendersOf, [macs]);
    return new Map(rows.map((r) => [r.mac, { timeZone: r.time_zone, documents: r.documents }]));
  }
}

/** What `directory_renders` keeps of a device's documents. */
const summary = (r: DeviceRender) => r.documents.map((d) => ({ name: d.name, sha256: d.sha256, size: d.body.length }));

// Compared by content, not as JSON text: jsonb does not keep the order of an object's keys.
const sameDocuments = (a: DirectoryPart['documents'], b: DirectoryPart['documents']) =>
  a.length === b.length && a.every((d, i) => d.name === b[i]!.name && d.sha256 === b[i]!.sha256 && d.size === b[i]!.size);

/** Retries of a failed pass (database or Redis away): doubling from 500 ms to 5 s, with jitter. */
const RETRY = { minMs: 500, maxMs: 5000 };

/** Provisions devices whose rendered documents changed (the provisioning engine's side, given at wiring). */
export type ProvisionDevices = (macs: string[]) => Promise<void>;

/**
 * Follows the directory: renders the devices of every site marked changed, stores the documents that
 * changed, and asks for one provisioning job per device whose documents changed. A burst of changes to one
 * site (a template import, many PINs) is rendered once: marks accumulate while a render runs, and the next
 * pass takes them all. The marks are rows written in the changing transaction, removed only once rendered,
 * so a crash loses nothing: the next start renders what was left.
 */
export class DirectoryFollower extends EventEmitter<{ rendered: [{ siteId: string; changed: string[] }]; retrying: [{ err: Error; delayMs: number }] }> {
  private running: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  /** Set while a failed pass waits to be retried: pokes meanwhile wait for it (no storm on a dead database). */
  private retry: NodeJS.Timeout | null = null;
  private failures = 0;
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly documents: DocumentStore,
    private readonly provision: ProvisionDevices,
    private readonly log: Logger,
    /** In a cluster only the engine process holding the follower's lease renders (one render per change). */
    private readonly mayRun: () => Promise<boolean> = async () => true,
  ) {
    super();
  }

  /** Renders pending changes now and then every `intervalMs` (a failed pass is retried after a backoff). */
  start(intervalMs: number): void {
    this.poke();
    this.timer = setInterval(() => this.poke(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    await this.running;
  }

  /** Something changed: render (again) soon. */
  poke = (): void => {
    if (this.closed) return;
    if (this.running || this.retry) {
      this.again = true;
      return;
    }
    this.running = this.drain().finally(() => {
      this.running = null;
    });
  };

  /** Resolves once every change marked so far has been rendered. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    do {
      this.again = false;
      try {
        if (!(await this.mayRun())) return;
        await this.pass();
        this.failures = 0;
      } catch (err) {
        // Never an `error` event: nobody listens, and an unheard one would end the process.
        const delayMs = backoffDelay(this.failures++, RETRY);
        this.log.warn({ err: (err as Error).message, retryInMs: delayMs }, 'rendering the directory failed; retrying');
        this.retry = setTimeout(() => {
          this.retry = null;
          this.poke();
        }, delayMs);
        this.retry.unref();
        this.emit('retrying', { err: err as Error, delayMs });
        return;
      }
    } while (this.again && !this.closed);
  }

  /** One pass over every site with pending changes. */
  async pass(): Promise<void> {
    const pending = await this.db
      .select({ siteId: directoryChanges.siteId, upTo: sql<number>`max(${directoryChanges.id})`.mapWith(Number) })
      .from(directoryChanges)
      .groupBy(directoryChanges.siteId);
    for (const { siteId, upTo } of pending) {
      const changed = await this.renderSite(siteId);
      if (changed.length) await this.provision(changed);
      await this.db.delete(directoryChanges).where(and(eq(directoryChanges.siteId, siteId), lte(directoryChanges.id, upTo)));
      this.emit('rendered', { siteId, changed });
      this.log.debug({ siteId, changed: changed.length }, 'directory rendered');
    }
  }

  /** Renders one site's devices; answers the devices whose documents or time zone changed. */
  private async renderSite(siteId: string): Promise<string[]> {
    const snapshot = await this.snapshot(siteId);
    const renders = snapshot ? renderSite(snapshot) : [];
    const macs = renders.map((r) => r.mac);
    const before = await this.db
      .select()
      .from(directoryRenders)
      .where(or(eq(directoryRenders.siteId, siteId), macs.length ? inArray(directoryRenders.mac, macs) : undefined));
    const previous = new Map(before.map((r) => [r.mac, r]));
    const changed: string[] = [];
    const fresh = renders.filter((r) => {
      const old = previous.get(r.mac);
      return !(old && old.siteId === siteId && old.timeZone === r.timeZone && sameDocuments(old.documents, summary(r)));
    });
    // Devices of one scope share their lists: each document's bytes are stored once, linked to each device.
    const holders = new Map<string, { document: RenderedDocument; macs: string[] }>();
    for (const r of fresh) {
      for (const d of r.documents) {
        const key = `${d.name}/${d.sha256}`;
        const entry = holders.get(key) ?? holders.set(key, { document: d, macs: [] }).get(key)!;
        entry.macs.push(r.mac);
      }
    }
    for (const { document, macs } of holders.values()) await this.documents.putForAll(macs, document.name, 'application/json', document.body);
    for (const r of fresh) {
      const documents = summary(r);
      const values = { siteId, timeZone: r.timeZone, documents, renderedAt: new Date() };
      await this.db
        .insert(directoryRenders)
        .values({ mac: r.mac, ...values })
        .onConflictDoUpdate({ target: directoryRenders.mac, set: values });
      changed.push(r.mac);
    }
    // Devices that left the site (moved, taken out, deleted) lose its part of their configuration.
    const placed = new Set(macs);
    const left = before.filter((r) => r.siteId === siteId && !placed.has(r.mac)).map((r) => r.mac);
    if (left.length) {
      await this.db.delete(directoryRenders).where(and(eq(directoryRenders.siteId, siteId), inArray(directoryRenders.mac, left)));
      changed.push(...left);
    }
    return changed;
  }

  private async snapshot(siteId: string): Promise<SiteSnapshot | null> {
    const siteRows = await this.db.select().from(sites).where(eq(sites.id, siteId)).limit(1);
    const site = siteRows[0];
    if (!site) return null;
    const [buildingRows, apartmentRows, residentRows, credentialRows, placementRows] = await Promise.all([
      this.db.select({ id: buildings.id, name: buildings.name, groundFloor: buildings.groundFloor, startFloor: buildings.startFloor }).from(buildings).where(eq(buildings.siteId, siteId)),
      this.db
        .select({ id: apartments.id, buildingId: apartments.buildingId, number: apartments.number, name: apartments.name, floor: apartments.floor, contactPreference: apartments.contactPreference, webRelayId: apartments.webRelayId })
        .from(apartments)
        .where(eq(apartments.siteId, siteId)),
      this.db
        .select({
          id: residents.id,
          apartmentId: residents.apartmentId,
          role: residents.role,
          firstName: residents.firstName,
          lastName: residents.lastName,
          mobile: residents.mobile,
          landlines: residents.landlines,
          accessibleFloors: residents.accessibleFloors,
          createdAt: residents.createdAt,
        })
        .from(residents)
        .where(eq(residents.siteId, siteId)),
      this.db
        .select({ apartmentId: credentials.apartmentId, residentId: credentials.residentId, kind: credentials.kind, value: credentials.value, validFrom: credentials.validFrom, validUntil: credentials.validUntil })
        .from(credentials)
        .where(eq(credentials.siteId, siteId)),
      this.db.select().from(placements).where(eq(placements.siteId, siteId)),
    ]);
    const where = new Map(placementRows.map((p) => [p.mac, p]));
    const facts = await deviceFacts(this.db, [...where.keys()]);
    return {
      site: { id: site.id, name: site.name, timeZone: site.timeZone, contactDisplay: site.contactDisplay, pinMode: site.pinMode },
      buildings: buildingRows,
      apartments: apartmentRows,
      residents: residentRows,
      credentials: credentialRows,
      devices: facts.map((d) => ({ ...d, buildingId: where.get(d.mac)?.buildingId ?? null, apartmentId: where.get(d.mac)?.apartmentId ?? null })),
    };
  }
}
