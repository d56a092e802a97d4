import { asc, count, eq, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { paginate, type Page } from '../shared/pagination.js';
import { type BuildingRow, type DirectoryAccess, editable, uniqueConflict } from './access.js';
import type { BuildingView, CreateBuildingInput, PatchBuildingInput } from './schemas.js';
import { apartments, buildings, placements } from './tables.js';

const buildingView = (b: BuildingRow): BuildingView => ({ id: b.id, siteId: b.siteId, name: b.name, groundFloor: b.groundFloor, startFloor: b.startFloor, ixgNumber: b.ixgNumber ?? null, createdAt: b.createdAt.toISOString() });

const buildingConflicts: Record<string, [string, string]> = {
  buildings_site_name_idx: ['building_name_taken', 'the site already has a building of that name'],
};

/** The directory's buildings of a site. */
export class Buildings {
  constructor(private readonly d: DirectoryAccess) {}

  async create(principal: Principal, siteId: string, input: CreateBuildingInput): Promise<BuildingView> {
    return this.d.write(async (tx) => {
      const site = await this.d.site(tx, principal, siteId);
      editable(site);
      try {
        const [row] = await tx.insert(buildings).values({ siteId, ...input }).returning();
        await this.d.record(tx, principal, site, 'building.created', row!.id, null);
        return buildingView(row!);
      } catch (err) {
        uniqueConflict(err, buildingConflicts);
      }
    });
  }

  async list(principal: Principal, siteId: string, q: { page: number; pageSize: number }): Promise<Page<BuildingView>> {
    await this.d.site(this.d.db, principal, siteId);
    const where = eq(buildings.siteId, siteId);
    return paginate(
      this.d.db.select().from(buildings).where(where).orderBy(asc(buildings.name), asc(buildings.id)).limit(q.pageSize).offset((q.page - 1) * q.pageSize),
      this.d.db.select({ n: count() }).from(buildings).where(where),
      buildingView,
      q.page,
      q.pageSize,
    );
  }

  async get(principal: Principal, buildingId: string): Promise<BuildingView> {
    return buildingView((await this.d.building(this.d.db, principal, buildingId)).building);
  }

  async update(principal: Principal, buildingId: string, patch: PatchBuildingInput): Promise<BuildingView> {
    return this.d.write(async (tx) => {
      const { site } = await this.d.building(tx, principal, buildingId);
      editable(site);
      try {
        const [row] = await tx.update(buildings).set(patch).where(eq(buildings.id, buildingId)).returning();
        await this.d.record(tx, principal, site, 'building.updated', buildingId, patch);
        return buildingView(row!);
      } catch (err) {
        uniqueConflict(err, buildingConflicts);
      }
    });
  }

  async remove(principal: Principal, buildingId: string): Promise<void> {
    await this.d.write(async (tx) => {
      const { site } = await this.d.building(tx, principal, buildingId);
      editable(site);
      const inside = tx.select({ id: apartments.id }).from(apartments).where(eq(apartments.buildingId, buildingId));
      await this.d.refuseWhilePlaced(tx, sql`${placements.buildingId} = ${buildingId} OR ${placements.apartmentId} IN ${inside}`, 'building_has_devices', 'the building still has devices placed in it or in its apartments; move or unplace them first');
      await tx.delete(buildings).where(eq(buildings.id, buildingId));
      await this.d.record(tx, principal, site, 'building.removed', buildingId, null);
    });
  }
}
