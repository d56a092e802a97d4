import { eq, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { APARTMENT_TYPES } from '../devices/types.js';
import { bindDevices, type NewDevice } from '../devices/bind.js';
import type { DeviceTypeCode } from '../devices/schemas.js';
import { deviceFacts } from '../devices/queries.js';
import type { Queryable } from '../db/client.js';
import { lockLibraryEntries } from '../mac-library/queries.js';
import type { SheetRow } from '../shared/csv.js';
import { badRequest } from '../shared/errors.js';
import { type DirectoryAccess, editable, inChunks } from './access.js';
import type { Placements } from './placements.js';
import { apartments, buildings, placements, residents } from './tables.js';
import { parseTemplate, TEMPLATE_COLUMNS, templateRow, type InvalidCell, type TemplateRow } from './template.js';

/** What the Device column places: apartments' monitors and villa door phones, buildings' entrances and terminals. */
const TEMPLATE_TYPES: ReadonlySet<string> = new Set([...APARTMENT_TYPES, '0', '3', '50']);

/** The portal's resident template: a whole site's directory in and out as one spreadsheet. */
export class SiteTemplates {
  constructor(
    private readonly d: DirectoryAccess,
    private readonly placements: Placements,
  ) {}

  /**
   * Imports the portal's resident template into a site in one transaction: buildings and apartments are
   * made as named, residents added (the first of an apartment its main resident), indoor monitors and
   * single-tenant door phones placed in their apartment, door and guard phones and access terminals in its
   * building (each made first when its MAC is only in the MAC library). Rows already in the directory (same apartment,
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
    const created = { devices: 0, buildings: 0, apartments: 0, residents: 0, placements: 0 };
    let updated = 0;
    let skipped = 0;
    await this.d.write(async (tx) => {
      // One import at a time per site: the lookups below stay true until commit.
      const site = await this.d.site(tx, principal, siteId, true);
      editable(site);
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

      const { faults: deviceFaults, toBind } = await this.checkDevices(tx, site.installerId, parsed.rows, facts);
      if (deviceFaults.length) refuse(deviceFaults);

      // Everything new is written in bulk, in file order: devices, buildings, apartments, residents, placements.
      await bindDevices(tx, principal, toBind, { siteId, via: 'template' });
      created.devices = toBind.length;
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
          if (!pending) pendingApartments.set(key, { siteId, buildingId: buildingIds.get(row.building)!, number: row.apartment.number, name: row.apartment.name, webRelayId: row.apartment.webRelayId ?? 0, floor: row.apartment.floor });
          else {
            if (row.apartment.name !== null) pending.name = row.apartment.name;
            if (row.apartment.floor !== null) pending.floor = row.apartment.floor;
          }
          touched.add(row.line);
        } else if (
          (row.apartment.name !== null && row.apartment.name !== existing.name) ||
          (row.apartment.webRelayId !== null && row.apartment.webRelayId !== existing.webRelayId) ||
          (row.apartment.floor !== null && row.apartment.floor !== existing.floor)
        ) {
          // An empty cell leaves the apartment's value as it is.
          const set = {
            ...(row.apartment.name !== null ? { name: row.apartment.name } : {}),
            ...(row.apartment.webRelayId !== null ? { webRelayId: row.apartment.webRelayId } : {}),
            ...(row.apartment.floor !== null ? { floor: row.apartment.floor } : {}),
          };
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
          // Monitors and a villa's door phone go in the apartment; entrances (0, 3, 50) in the row's building.
          const target = { siteId, buildingId: apartment.buildingId, apartmentId: APARTMENT_TYPES.has(d.type) ? apartment.id : null };
          const at = placedNow.get(d.mac);
          if (at?.siteId === siteId && at.buildingId === target.buildingId && at.apartmentId === target.apartmentId) continue;
          moves.set(d.mac, { mac: d.mac, ...target });
          placedNow.set(d.mac, target);
          touched.add(row.line);
        }
      }
      // Devices checked above (the site installer's own or just bound, of a type an apartment holds); a moved one's old site re-renders too.
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

  /**
   * The Device column against the database: a MAC that is the site installer's device is placed; one in its
   * MAC library with no device yet is bound to a new device (seed 004: "Device MAC must be added first in
   * the MAC library"); anything else is a fault of its line. Seed 004's example names a multi-tenant door
   * phone beside a monitor ("Gate2,0,…; Living Room,2,…"): entrances are placed in the row's building. Not in the library and another installer's
   * MAC read the same, so a file cannot probe other installers' libraries. Library entries stay locked.
   */
  private async checkDevices(tx: Queryable, installerId: string, rows: TemplateRow[], facts: Map<string, { type: string; installerId: string }>) {
    const unbound = [...new Set(rows.flatMap((r) => r.devices.map((d) => d.mac)))].filter((mac) => !facts.has(mac));
    const library = await lockLibraryEntries(tx, unbound);
    const faults: InvalidCell[] = [];
    const toBind = new Map<string, NewDevice>();
    const namedAt = new Map<string, { line: number; place: string }>();
    for (const row of rows) {
      for (const d of row.devices) {
        const place = APARTMENT_TYPES.has(d.type) ? `${row.building}\u0000${row.apartment.number}` : row.building;
        const device = facts.get(d.mac);
        const fault = (reason: string) => faults.push({ line: row.line, column: 'Device', value: `${d.name},${d.type},${d.mac}`, reason });
        const earlier = namedAt.get(d.mac);
        if (earlier && earlier.place !== place) fault(`this MAC is placed elsewhere on line ${earlier.line}`);
        else if (device ? device.installerId !== installerId : library.get(d.mac) !== installerId) fault("this MAC is not in the MAC library of the site's installer; add it there first");
        else if ((device?.type ?? d.type) !== d.type) fault(`the device with this MAC has type ${device!.type}, not ${d.type}`);
        else if (!TEMPLATE_TYPES.has(d.type)) fault('an IXG gateway is not placed from the template');
        else if (!device && !toBind.has(d.mac)) toBind.set(d.mac, { mac: d.mac, installerId, name: d.name, type: d.type });
        if (!earlier) namedAt.set(d.mac, { line: row.line, place });
      }
    }
    return { faults, toBind: [...toBind.values()] };
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
    const facts = new Map((await deviceFacts(this.d.db, placementRows.filter((p) => p.buildingId).map((p) => p.mac))).map((d) => [d.mac, d]));
    const devicesAt = (buildingId: string, apartmentId: string | null) =>
      placementRows
        .filter((p) => p.buildingId === buildingId && p.apartmentId === apartmentId && facts.has(p.mac))
        .map((p) => facts.get(p.mac)!)
        .sort((a, b) => (a.mac < b.mac ? -1 : 1))
        .map((d) => ({ name: d.name, type: d.type as DeviceTypeCode, mac: d.mac }));
    const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
    const ordered = [...apartmentRows].sort((a, b) => cmp(buildingName.get(a.buildingId)!, buildingName.get(b.buildingId)!) || cmp(a.number, b.number));
    const rows: string[][] = [[...TEMPLATE_COLUMNS]];
    const buildingWritten = new Set<string>();
    // A building's entrances ride on its first row; they import back to the building, by their type.
    const devicesOf = (a: (typeof ordered)[number]) => {
      const entrances = buildingWritten.has(a.buildingId) ? [] : devicesAt(a.buildingId, null);
      buildingWritten.add(a.buildingId);
      return [...entrances, ...devicesAt(a.buildingId, a.id)];
    };
    for (const a of ordered) {
      const people = residentRows
        .filter((r) => r.apartmentId === a.id)
        .sort((x, y) => (x.role === y.role ? x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : 1) : x.role === 'main' ? -1 : 1));
      const base = { building: buildingName.get(a.buildingId)!, apartment: a.number, apartmentName: a.name, apartmentFloor: a.floor, webRelayId: a.webRelayId };
      if (!people.length) rows.push(templateRow({ ...base, accessibleFloors: [], devices: devicesOf(a), resident: null }));
      people.forEach((p, i) => rows.push(templateRow({ ...base, accessibleFloors: p.accessibleFloors, devices: i === 0 ? devicesOf(a) : [], resident: p })));
    }
    return rows;
  }
}
