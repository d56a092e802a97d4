import { eq, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { APARTMENT_TYPES } from '../devices/types.js';
import { deviceFacts } from '../devices/queries.js';
import type { SheetRow } from '../shared/csv.js';
import { badRequest } from '../shared/errors.js';
import { inChunks, type DirectoryAccess } from './access.js';
import type { Placements } from './placements.js';
import { apartments, buildings, placements, residents } from './tables.js';
import { parseTemplate, TEMPLATE_COLUMNS, templateRow, type InvalidCell } from './template.js';

/** The portal's resident template: a whole site's directory in and out as one spreadsheet. */
export class SiteTemplates {
  constructor(
    private readonly d: DirectoryAccess,
    private readonly placements: Placements,
  ) {}

  /**
   * Imports the portal's resident template into a site in one transaction: buildings and apartments are
   * made as named, residents added (the first of an apartment its main resident), indoor monitors and
   * single-tenant door phones placed in their apartment. Rows already in the directory (same apartment,
   * same resident name) are skipped, so an export imports back without change. Any faulty row refuses the
   * whole file (400 `template_invalid`, every fault with line, column and reason) and writes nothing.
   */
  async import(principal: Principal, siteId: string, sheet: SheetRow[]) {
    const parsed = parseTemplate(sheet);
    if (!parsed.rows.length && !parsed.invalid.length) throw badRequest('template_empty', 'the file has a header but no rows');
    const refuse = (invalid: InvalidCell[]) => {
      throw badRequest('template_invalid', `${invalid.length} fault(s) in the file; nothing was imported`, { invalid: invalid.slice(0, 1000), ignoredColumns: parsed.ignoredColumns });
    };
    if (parsed.invalid.length) refuse(parsed.invalid);
    const created = { buildings: 0, apartments: 0, residents: 0, placements: 0 };
    let updated = 0;
    let skipped = 0;
    await this.d.write(async (tx) => {
      // One import at a time per site: the lookups below stay true until commit.
      const site = await this.d.site(tx, principal, siteId, true);
      const buildingIds = new Map((await tx.select({ id: buildings.id, name: buildings.name }).from(buildings).where(eq(buildings.siteId, siteId))).map((b) => [b.name, b.id]));
      const existingApartments = await tx.select().from(apartments).where(eq(apartments.siteId, siteId));
      const apartmentOf = new Map(existingApartments.map((a) => [`${a.buildingId}/${a.number}`, a]));
      const residentRows = await tx.select({ apartmentId: residents.apartmentId, role: residents.role, firstName: residents.firstName, lastName: residents.lastName }).from(residents).where(eq(residents.siteId, siteId));
      const nameKey = (apartmentId: string, first: string, last: string) => `${apartmentId}/${first.toLowerCase()}/${last.toLowerCase()}`;
      const residentNames = new Set(residentRows.map((r) => nameKey(r.apartmentId, r.firstName, r.lastName)));
      const withMain = new Set(residentRows.filter((r) => r.role === 'main').map((r) => r.apartmentId));
      const macs = [...new Set(parsed.rows.flatMap((r) => r.devices.map((d) => d.mac)))];
      const facts = new Map((await deviceFacts(tx, macs)).map((d) => [d.mac, d]));
      const placedBefore = await this.placements.of(macs, tx);
      const placedNow = new Map(placedBefore);

      const deviceFaults: InvalidCell[] = [];
      for (const row of parsed.rows) {
        for (const d of row.devices) {
          const device = facts.get(d.mac);
          const value = `${d.name},${d.type},${d.mac}`;
          if (!device || device.installerId !== site.installerId) deviceFaults.push({ line: row.line, column: 'Device', value, reason: "no device with this MAC among the site installer's devices; add the device first" });
          else if (device.type !== d.type) deviceFaults.push({ line: row.line, column: 'Device', value, reason: `the device with this MAC has type ${device.type}, not ${d.type}` });
          else if (!APARTMENT_TYPES.has(device.type)) deviceFaults.push({ line: row.line, column: 'Device', value, reason: 'only indoor monitors (2) and single-tenant door phones (1) belong to an apartment' });
        }
      }
      if (deviceFaults.length) refuse(deviceFaults);

      // Everything new is written in bulk, in file order: buildings, apartments, residents, placements.
      const newBuildings = [...new Set(parsed.rows.map((r) => r.building))].filter((name) => !buildingIds.has(name));
      for (const b of await inChunks(newBuildings, (c) => tx.insert(buildings).values(c.map((name) => ({ siteId, name }))).returning())) buildingIds.set(b.name, b.id);
      created.buildings = newBuildings.length;

      const rowApartment = (row: (typeof parsed.rows)[number]) => `${buildingIds.get(row.building)}/${row.apartment.number}`;
      const pendingApartments = new Map<string, typeof apartments.$inferInsert>();
      const touched = new Set<number>();
      for (const row of parsed.rows) {
        const key = rowApartment(row);
        const existing = apartmentOf.get(key);
        if (!existing) {
          const pending = pendingApartments.get(key);
          if (!pending) pendingApartments.set(key, { siteId, buildingId: buildingIds.get(row.building)!, number: row.apartment.number, name: row.apartment.name, webRelayId: row.apartment.webRelayId ?? 0 });
          else if (row.apartment.name !== null) pending.name = row.apartment.name;
          touched.add(row.line);
        } else if ((row.apartment.name !== null && row.apartment.name !== existing.name) || (row.apartment.webRelayId !== null && row.apartment.webRelayId !== existing.webRelayId)) {
          const set = { ...(row.apartment.name !== null ? { name: row.apartment.name } : {}), ...(row.apartment.webRelayId !== null ? { webRelayId: row.apartment.webRelayId } : {}) };
          const [changedApartment] = await tx.update(apartments).set(set).where(eq(apartments.id, existing.id)).returning();
          apartmentOf.set(key, changedApartment!);
          updated++;
          touched.add(row.line);
        }
      }
      for (const a of await inChunks([...pendingApartments.values()], (c) => tx.insert(apartments).values(c).returning())) apartmentOf.set(`${a.buildingId}/${a.number}`, a);
      created.apartments = pendingApartments.size;

      // created_at carries the file's order (one transaction has one now()): main resident first, then family.
      const clock = Date.now();
      const newResidents: (typeof residents.$inferInsert)[] = [];
      for (const row of parsed.rows) {
        const apartmentId = apartmentOf.get(rowApartment(row))!.id;
        if (!row.resident || residentNames.has(nameKey(apartmentId, row.resident.firstName, row.resident.lastName))) continue;
        newResidents.push({ siteId, apartmentId, role: withMain.has(apartmentId) ? 'family' : 'main', ...row.resident, accessibleFloors: row.accessibleFloors, createdAt: new Date(clock + newResidents.length) });
        withMain.add(apartmentId);
        residentNames.add(nameKey(apartmentId, row.resident.firstName, row.resident.lastName));
        touched.add(row.line);
      }
      await inChunks(newResidents, (c) => tx.insert(residents).values(c).returning({ id: residents.id }));
      created.residents = newResidents.length;

      const moves = new Map<string, typeof placements.$inferInsert>();
      for (const row of parsed.rows) {
        const apartment = apartmentOf.get(rowApartment(row))!;
        for (const d of row.devices) {
          const at = placedNow.get(d.mac);
          if (at?.siteId === siteId && at.apartmentId === apartment.id) continue;
          moves.set(d.mac, { mac: d.mac, siteId, buildingId: apartment.buildingId, apartmentId: apartment.id });
          placedNow.set(d.mac, { siteId, buildingId: apartment.buildingId, apartmentId: apartment.id });
          touched.add(row.line);
        }
      }
      // Devices checked above (the site installer's own, of a type an apartment holds); a moved one's old site re-renders too.
      for (const other of new Set([...moves.keys()].map((mac) => placedBefore.get(mac)?.siteId).filter((id): id is string => !!id && id !== siteId))) await this.d.changed(tx, other, principal);
      await inChunks([...moves.values()], (c) =>
        tx
          .insert(placements)
          .values(c)
          .onConflictDoUpdate({ target: placements.mac, set: { siteId: sql`excluded.site_id`, buildingId: sql`excluded.building_id`, apartmentId: sql`excluded.apartment_id` } })
          .returning({ mac: placements.mac }),
      );
      created.placements = moves.size;
      skipped = parsed.rows.filter((r) => !touched.has(r.line)).length;
      await this.d.record(tx, principal, site, 'template.imported', null, { created, updated });
    });
    return { created, updated, skipped, invalid: [] as InvalidCell[], ignoredColumns: parsed.ignoredColumns };
  }

  /** The site's directory in the template's layout (one row per resident, or per apartment without residents). */
  async export(principal: Principal, siteId: string): Promise<string[][]> {
    await this.d.site(this.d.db, principal, siteId);
    const [buildingRows, apartmentRows, residentRows, placementRows] = await Promise.all([
      this.d.db.select().from(buildings).where(eq(buildings.siteId, siteId)),
      this.d.db.select().from(apartments).where(eq(apartments.siteId, siteId)),
      this.d.db.select().from(residents).where(eq(residents.siteId, siteId)),
      this.d.db.select().from(placements).where(eq(placements.siteId, siteId)),
    ]);
    const buildingName = new Map(buildingRows.map((b) => [b.id, b.name]));
    const facts = new Map((await deviceFacts(this.d.db, placementRows.filter((p) => p.apartmentId).map((p) => p.mac))).map((d) => [d.mac, d]));
    const devicesOf = (apartmentId: string) =>
      placementRows
        .filter((p) => p.apartmentId === apartmentId && facts.has(p.mac))
        .map((p) => facts.get(p.mac)!)
        .sort((a, b) => (a.mac < b.mac ? -1 : 1))
        .map((d) => ({ name: d.name, type: d.type, mac: d.mac }));
    const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    const ordered = [...apartmentRows].sort((a, b) => cmp(buildingName.get(a.buildingId)!, buildingName.get(b.buildingId)!) || cmp(a.number, b.number));
    const rows: string[][] = [[...TEMPLATE_COLUMNS]];
    for (const a of ordered) {
      const people = residentRows
        .filter((r) => r.apartmentId === a.id)
        .sort((x, y) => (x.role === y.role ? x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : 1) : x.role === 'main' ? -1 : 1));
      const base = { building: buildingName.get(a.buildingId)!, apartment: a.number, apartmentName: a.name, webRelayId: a.webRelayId };
      if (!people.length) rows.push(templateRow({ ...base, accessibleFloors: [], devices: devicesOf(a.id), resident: null }));
      people.forEach((p, i) => rows.push(templateRow({ ...base, accessibleFloors: p.accessibleFloors, devices: i === 0 ? devicesOf(a.id) : [], resident: p })));
    }
    return rows;
  }
}
