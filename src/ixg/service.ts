import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { recordWriteAs } from '../audit/service.js';
import type { Db, Tx } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import type { DirectoryService } from '../directory/service.js';
import { badRequest, conflict, forbidden, notFound } from '../shared/errors.js';
import { diffUploads, type IxgDiff } from './diff.js';
import type { IxgSiteDocument } from './schemas.js';
import { ixgApps, ixgSites, ixgStations } from './tables.js';

type Directory = Pick<DirectoryService, 'mirrorIxg' | 'committed' | 'of' | 'siteFor'>;

export interface IxgUploadAnswer {
  siteId: string;
  version: number;
  /** True: the same settings as the last upload; nothing was written. */
  unchanged: boolean;
  counts: IxgDiff['counts'];
  /** App stations that lost their app listing (removed, or moved to another unit) and with it their account. */
  appStationsRemoved: number;
}

/** The calls domain's part of an upload: app stations whose listing (`building/unit/app`) is gone lose their account. */
export interface IxgAppStations {
  withdrawIxgApps(tx: Tx, siteId: string, keep: ReadonlySet<string>): Promise<number>;
}

const chunks = <T>(rows: T[], size = 1000) => Array.from({ length: Math.ceil(rows.length / size) }, (_, i) => rows.slice(i * size, (i + 1) * size));

/**
 * Aiphone IXG sites (seed 000): an IXGW-(T)GW gateway uploads its system's settings, and the site it is
 * placed in mirrors them: buildings and units in the directory (read-only there), stations and each app
 * listing's address book here; every upload that changes something is audited with its diff.
 */
export class IxgSites {
  constructor(
    private readonly db: Db,
    private readonly directory: Directory,
    private readonly apps: IxgAppStations,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** An upload by the gateway `mac` (authenticated with its device credentials), checked by `ixgSiteDocument` at the boundary. */
  async upload(mac: string, doc: IxgSiteDocument): Promise<IxgUploadAnswer> {
    const [device] = await deviceFacts(this.db, [mac]);
    if (!device || device.type !== 'ixgw') throw forbidden('only an IXGW-(T)GW gateway (device type ixgw) uploads IXG site settings');
    if (!doc.gateways.some((g) => g.mac === mac)) throw badRequest('gateway_not_listed', 'the uploading gateway is not in the settings\' gateway list', { mac });
    const siteId = (await this.directory.of([mac])).get(mac)?.siteId;
    if (!siteId) throw conflict('gateway_not_placed', 'place the gateway in a site first: the site mirrors what it uploads', { mac });
    const sha256 = createHash('sha256').update(JSON.stringify(doc)).digest('hex');

    const answer = await this.db.transaction(async (tx) => {
      const [prior] = await tx.select().from(ixgSites).where(eq(ixgSites.siteId, siteId)).for('update');
      if (prior?.sha256 === sha256) return { siteId, version: prior.version, unchanged: true, counts: diffUploads(doc, doc, true).counts, appStationsRemoved: 0 };
      const keep = new Set(doc.buildings.flatMap((b) => b.units.flatMap((u) => u.apps.map((a) => `${b.number}/${u.number}/${a.number}`))));
      const appStationsRemoved = prior ? await this.apps.withdrawIxgApps(tx, siteId, keep) : 0;
      const { buildingIds, apartmentIds } = await this.directory.mirrorIxg(
        tx,
        siteId,
        doc.buildings.map((b) => ({ number: b.number, name: b.name, units: b.units.map((u) => ({ number: u.number, name: u.name, type: u.type })) })),
      );
      await tx.delete(ixgStations).where(eq(ixgStations.siteId, siteId));
      await tx.delete(ixgApps).where(eq(ixgApps.siteId, siteId));
      const stations = doc.buildings.flatMap((b) =>
        b.units.flatMap((u) => u.stations.map((s) => ({ siteId, number: s.number, name: s.name, type: s.type, ip: s.ip, buildingId: buildingIds.get(b.number)!, apartmentId: apartmentIds.get(`${b.number}/${u.number}`)! }))),
      );
      const apps = doc.buildings.flatMap((b) => b.units.flatMap((u) => u.apps.map((a) => ({ siteId, number: a.number, name: a.name, addressBook: a.addressBook, apartmentId: apartmentIds.get(`${b.number}/${u.number}`)! }))));
      for (const c of chunks(stations)) await tx.insert(ixgStations).values(c);
      for (const c of chunks(apps)) await tx.insert(ixgApps).values(c);
      const version = (prior?.version ?? 0) + 1;
      const row = { siteId, gatewayMac: mac, version, sha256, document: doc, uploadedAt: this.now() };
      await tx.insert(ixgSites).values(row).onConflictDoUpdate({ target: ixgSites.siteId, set: row });
      const diff = diffUploads(prior?.document ?? null, doc);
      // The installer's gateway acts for the installer: the write is the installer's, made by the gateway.
      await recordWriteAs(tx, device.installerId, { installerId: device.installerId, siteId, action: 'ixg.uploaded', subject: mac, details: { version, ...diff, appStationsRemoved } });
      return { siteId, version, unchanged: false, counts: diff.counts, appStationsRemoved };
    });
    if (!answer.unchanged) this.directory.committed();
    return answer;
  }

  /** The site's last upload as its gateway sent it, for the portal's read-only pages. */
  async view(principal: Principal, siteId: string): Promise<{ siteId: string; gatewayMac: string; version: number; uploadedAt: string; settings: IxgSiteDocument }> {
    await this.directory.siteFor(this.db, principal, siteId);
    const [row] = await this.db.select().from(ixgSites).where(eq(ixgSites.siteId, siteId));
    if (!row) throw notFound('IXG site settings', { siteId });
    return { siteId, gatewayMac: row.gatewayMac, version: row.version, uploadedAt: row.uploadedAt.toISOString(), settings: row.document };
  }
}
