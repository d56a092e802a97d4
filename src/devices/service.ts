import { and, count, desc, eq, ilike, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { recordWrite } from '../audit/service.js';
import type { Db, Queryable } from '../db/client.js';
import { GroupCommit } from '../db/group-commit.js';
import { lockLibraryEntry } from '../mac-library/queries.js';
import { conflict, notFound } from '../shared/errors.js';
import type { DomainEvents } from '../shared/events.js';
import { likePattern, paginate, type Page } from '../shared/pagination.js';
import { codeToType, deviceTypeNames, typeToCode, type CreateDeviceInput, type DeviceTypeCode, type DeviceView, type PatchDeviceInput } from './schemas.js';
import type { DevicePlacements, DevicePlacementView } from './placement.js';
import { newSipPassword, nextSipNumber } from './sip-account.js';
import { devices } from './tables.js';

export type DeviceRow = typeof devices.$inferSelect;

const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : v instanceof Date ? v : new Date(v as string));

/** A devices row as raw SQL answers it (snake_case, timestamps as text), as drizzle's select would. */
function deviceFromRow(r: Record<string, unknown>): DeviceRow {
  return {
    mac: r.mac as string,
    installerId: r.installer_id as string,
    name: r.name as string,
    type: r.type as string,
    networkGroup: Number(r.network_group),
    location: (r.location as string | null) ?? null,
    relays: (r.relays as DeviceRow['relays']) ?? [],
    allowMonitoring: r.allow_monitoring === true,
    connectType: r.connect_type as DeviceRow['connectType'],
    sipNumber: r.sip_number as string,
    sipPassword: r.sip_password as string,
    status: r.status as DeviceRow['status'],
    lastConnectedAt: dateOrNull(r.last_connected_at),
    sessionEpoch: r.session_epoch === null || r.session_epoch === undefined ? null : Number(r.session_epoch),
    sessionGateway: (r.session_gateway as string | null) ?? null,
    ip: (r.ip as string | null) ?? null,
    model: (r.model as string | null) ?? null,
    firmware: (r.firmware as string | null) ?? null,
    configHash: (r.config_hash as string | null) ?? null,
    createdAt: dateOrNull(r.created_at)!,
    updatedAt: dateOrNull(r.updated_at)!,
  };
}


function deviceView(d: DeviceRow, placement: DevicePlacementView | null = null): DeviceView {
  return {
    mac: d.mac,
    installerId: d.installerId,
    name: d.name,
    type: codeToType(d.type),
    typeName: deviceTypeNames[d.type as DeviceTypeCode] ?? d.type,
    networkGroup: d.networkGroup,
    location: d.location,
    relays: d.relays,
    allowMonitoring: d.allowMonitoring,
    sipNumber: d.sipNumber,
    status: d.status,
    lastConnectedAt: d.lastConnectedAt?.toISOString() ?? null,
    ip: d.ip,
    model: d.model,
    firmware: d.firmware,
    siteId: placement?.siteId ?? null,
    buildingId: placement?.buildingId ?? null,
    apartmentId: placement?.apartmentId ?? null,
    createdAt: d.createdAt.toISOString(),
    updatedAt: d.updatedAt.toISOString(),
  };
}

export class DeviceService {
  // Every command the engine sends reads its device's record: reads that arrive together share a statement.
  private readonly records = new GroupCommit<string, DeviceRow | null>((macs) => this.recordsOf(macs));
  private readonly exchanges = new GroupCommit<{ mac: string; hash: string }, { previous: string | null; installerId: string } | null>(
    async (reports) => {
      const out = await this.exchangeConfigHashes(reports);
      return reports.map((r) => {
        const e = out.get(r.mac);
        return e ? { previous: e.previous, installerId: e.record.installerId } : null;
      });
    },
    { key: (r) => r.mac },
  );

  constructor(
    private readonly db: Db,
    private readonly events: DomainEvents,
    /** Where devices are installed: the directory's records, reached through this narrow interface. */
    private readonly placements: DevicePlacements,
  ) {}

  private scope(principal: Principal): SQL | undefined {
    if (principal.role === 'distributor') return undefined;
    // A property manager sees only the devices placed in its sites.
    return and(eq(devices.installerId, principal.accountId), principal.sites ? this.placements.filter(devices.mac, { siteIds: principal.sites }) : undefined);
  }

  /** The MACs of the devices the caller may see, as a subquery (another domain scopes its rows by it). */
  visibleMacs(principal: Principal) {
    return this.db.select({ mac: devices.mac }).from(devices).where(this.scope(principal));
  }

  /** Binds a MAC from the caller's MAC library to a new device with a cloud-allocated SIP account. */
  async create(principal: Principal, input: CreateDeviceInput): Promise<DeviceView & { sip: { number: string; password: string } }> {
    return this.db.transaction(async (tx) => {
      // Locking the MAC library row serialises concurrent binds of the same MAC.
      const entry = await lockLibraryEntry(tx, input.mac);
      if (!entry || (principal.role === 'installer' && entry.installerId !== principal.accountId)) {
        throw conflict('mac_not_in_library', `MAC ${input.mac} is not in your MAC library; add it there first`, { mac: input.mac });
      }
      const bound = await tx.select({ mac: devices.mac }).from(devices).where(eq(devices.mac, input.mac)).limit(1);
      if (bound[0]) throw conflict('mac_already_bound', `MAC ${input.mac} is already bound to a device`, { mac: input.mac });

      const password = newSipPassword();
      const [row] = await tx
        .insert(devices)
        .values({
          mac: input.mac,
          installerId: entry.installerId,
          name: input.name,
          type: typeToCode(input.type),
          networkGroup: input.networkGroup,
          location: input.location ?? null,
          relays: input.relays,
          allowMonitoring: input.allowMonitoring,
          sipNumber: nextSipNumber(),
          sipPassword: password,
        })
        .returning();
      await recordWrite(tx, principal, { installerId: entry.installerId, action: 'device.created', subject: input.mac, details: { name: input.name, type: input.type } });
      return { ...deviceView(row!), sip: { number: row!.sipNumber, password } };
    });
  }

  async get(principal: Principal, mac: string): Promise<DeviceView> {
    const rows = await this.db
      .select()
      .from(devices)
      .where(and(eq(devices.mac, mac), this.scope(principal)))
      .limit(1);
    if (!rows[0]) throw notFound('device', { mac });
    return (await this.withPlacements(rows))[0]!;
  }

  private async withPlacements(rows: DeviceRow[]): Promise<DeviceView[]> {
    const placed = await this.placements.of(rows.map((r) => r.mac));
    return rows.map((r) => deviceView(r, placed.get(r.mac) ?? null));
  }

  async list(
    principal: Principal,
    q: { search?: string; status?: 'online' | 'offline'; type?: DeviceTypeCode; siteId?: string; buildingId?: string; apartmentId?: string; page: number; pageSize: number },
  ): Promise<Page<DeviceView>> {
    const conditions: (SQL | undefined)[] = [this.scope(principal)];
    if (q.search) {
      const pattern = likePattern(q.search);
      const macPart = q.search.replace(/[:\-\s]/g, '').toUpperCase();
      conditions.push(or(macPart ? ilike(devices.mac, likePattern(macPart)) : undefined, ilike(devices.name, pattern), ilike(devices.sipNumber, pattern)));
    }
    if (q.status) conditions.push(eq(devices.status, q.status));
    if (q.type) conditions.push(eq(devices.type, q.type));
    if (q.siteId || q.buildingId || q.apartmentId) conditions.push(this.placements.filter(devices.mac, q));
    const where = and(...conditions);
    const page = await paginate(
      this.db
        .select()
        .from(devices)
        .where(where)
        .orderBy(desc(devices.createdAt), desc(devices.mac))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(devices).where(where),
      (row: DeviceRow) => row,
      q.page,
      q.pageSize,
    );
    return { ...page, items: await this.withPlacements(page.items) };
  }

  /** Changes a device; placing it (siteId, buildingId, apartmentId) is recorded in the same transaction. */
  async update(principal: Principal, mac: string, patch: PatchDeviceInput): Promise<DeviceView> {
    const { type, siteId, buildingId, apartmentId, ...rest } = patch;
    const fields = { ...rest, ...(type !== undefined ? { type: typeToCode(type) } : {}) };
    const row = await this.db.transaction(async (tx) => {
      const rows = await tx
        .update(devices)
        .set({ ...fields, updatedAt: new Date() })
        .where(and(eq(devices.mac, mac), this.scope(principal)))
        .returning();
      const row = rows[0];
      if (!row) throw notFound('device', { mac });
      if (siteId !== undefined) {
        const target = siteId === null ? null : { siteId, buildingId: buildingId ?? null, apartmentId: apartmentId ?? null };
        await this.placements.place(tx, principal, row, target);
      }
      // Others list this device by its name, type and location: what they were given must follow.
      if (Object.keys(fields).length) await this.placements.deviceChanged(tx, row);
      await recordWrite(tx, principal, { installerId: row.installerId, action: 'device.updated', subject: mac, details: patch });
      return row;
    });
    this.placements.committed();
    return (await this.withPlacements([row]))[0]!;
  }

  /** Deletes the device and so unbinds its MAC (which stays in the MAC library); its session is closed. */
  async remove(principal: Principal, mac: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await this.placements.deviceRemoved(tx, mac);
      const rows = await tx
        .delete(devices)
        .where(and(eq(devices.mac, mac), this.scope(principal)))
        .returning({ mac: devices.mac, installerId: devices.installerId });
      if (!rows[0]) throw notFound('device', { mac });
      await recordWrite(tx, principal, { installerId: rows[0].installerId, action: 'device.removed', subject: mac });
    });
    this.placements.committed();
    this.events.emit('device.removed', { mac });
  }

  /**
   * The full record, SIP password included, for rendering the device's configuration. Read in batches, but
   * an urgent job's (a door opening) alone and at once, never behind the batches in flight.
   */
  async getRecord(mac: string, lane: 'normal' | 'urgent' = 'normal'): Promise<DeviceRow | null> {
    return lane === 'urgent' ? (await this.recordsOf([mac]))[0]! : this.records.submit(mac);
  }

  private async recordsOf(macs: string[]): Promise<(DeviceRow | null)[]> {
    const rows = await this.db.select().from(devices).where(inArray(devices.mac, [...new Set(macs)]));
    const byMac = new Map(rows.map((r) => [r.mac, r]));
    return macs.map((m) => byMac.get(m) ?? null);
  }

  /** Which of these MACs are the caller's devices. */
  async ownedMacs(principal: Principal, macs: string[]): Promise<Map<string, string>> {
    if (!macs.length) return new Map();
    const rows = await this.db
      .select({ mac: devices.mac, installerId: devices.installerId })
      .from(devices)
      .where(and(inArray(devices.mac, macs), this.scope(principal)));
    return new Map(rows.map((r) => [r.mac, r.installerId]));
  }

  /**
   * Owner, model and firmware (as last reported) of these devices: the caller's only, or, with no
   * principal, whoever owns them (work started on an owner's behalf, e.g. a scheduled upgrade).
   */
  async firmwareOf(macs: string[], principal: Principal | null, tx: Queryable = this.db): Promise<Map<string, { installerId: string; model: string | null; firmware: string | null }>> {
    if (!macs.length) return new Map();
    const rows = await tx
      .select({ mac: devices.mac, installerId: devices.installerId, model: devices.model, firmware: devices.firmware })
      .from(devices)
      .where(and(inArray(devices.mac, macs), principal ? this.scope(principal) : undefined));
    return new Map(rows.map(({ mac, ...rest }) => [mac, rest]));
  }

  async setConnectType(principal: Principal, mac: string, connectType: 'udp' | 'tcp' | 'tls', tx: Queryable = this.db): Promise<void> {
    const rows = await tx
      .update(devices)
      .set({ connectType, updatedAt: new Date() })
      .where(and(eq(devices.mac, mac), this.scope(principal)))
      .returning({ mac: devices.mac });
    if (!rows[0]) throw notFound('device', { mac });
  }

  /** Records the configuration hash a device reported; answers the one it had reported before, and its owner. */
  async exchangeConfigHash(mac: string, hash: string): Promise<{ previous: string | null; installerId: string } | null> {
    // Answers that arrive together share `exchangeConfigHashes`' one statement.
    return this.exchanges.submit({ mac, hash });
  }

  /**
   * `exchangeConfigHash` for hellos that arrived together, in one statement: only rows whose hash changes
   * are locked and written (a reboot storm of devices that report what they hold writes nothing). Answers,
   * per MAC with a device record, the hash reported before and the record itself (for rendering).
   */
  async exchangeConfigHashes(reports: { mac: string; hash: string }[]): Promise<Map<string, { previous: string | null; record: DeviceRow }>> {
    if (!reports.length) return new Map();
    const result = await this.db.execute<Record<string, unknown>>(sql`
      WITH input AS (SELECT DISTINCT ON (mac) mac, hash FROM unnest(${sql.param(reports.map((r) => r.mac))}::text[], ${sql.param(reports.map((r) => r.hash))}::text[]) AS x(mac, hash)),
      old AS (
        SELECT d.mac, d.config_hash FROM devices d JOIN input i ON i.mac = d.mac
        WHERE d.config_hash IS DISTINCT FROM i.hash ORDER BY d.mac FOR UPDATE OF d
      ), changed AS (
        UPDATE devices d SET config_hash = i.hash FROM input i, old o WHERE d.mac = i.mac AND o.mac = i.mac RETURNING d.mac
      )
      SELECT d.*, CASE WHEN o.mac IS NULL THEN i.hash ELSE o.config_hash END AS previous
      FROM input i JOIN devices d ON d.mac = i.mac LEFT JOIN old o ON o.mac = i.mac`);
    return new Map(result.rows.map((r) => [r.mac as string, { previous: (r.previous as string | null) ?? null, record: deviceFromRow(r) }]));
  }

  async countByStatus(status: 'online' | 'offline'): Promise<number> {
    const rows = await this.db.select({ n: count() }).from(devices).where(eq(devices.status, status));
    return rows[0]?.n ?? 0;
  }
}
