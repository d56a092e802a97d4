import { and, count, desc, eq, isNull, lte, or, sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import type { DeviceService } from '../devices/service.js';
import type { JobRow } from '../provisioning/job-store.js';
import { accountActor, batchHasUnfinishedJob, type JobActor, type ProvisioningService, type RequestContext, type Submitted } from '../provisioning/service.js';
import { finishedStates } from '../provisioning/tables.js';
import { badRequest, conflict, notFound } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import { normalizeModel } from './models.js';
import {
  deviceUpgradeStates,
  type CreateUpgrade,
  type DeviceUpgradeState,
  type PatchUpgrade,
  type UpgradeDetail,
  type UpgradeStatus,
  type UpgradeView,
} from './schemas.js';
import type { UpgradeScheduler } from './scheduler.js';
import { upgradeStages, type UpgradeStage } from './upgrade-kind.js';
import { firmware, upgrades, type SkippedDevice } from './tables.js';

type UpgradeRow = typeof upgrades.$inferSelect;
type FirmwareRow = typeof firmware.$inferSelect;
type DeviceJob = Pick<JobRow, 'id' | 'mac' | 'batchId' | 'state' | 'stage' | 'progress' | 'error' | 'updatedAt'>;

const DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600;
// An upgrade's status from its jobs. The upgrade's id is named with its table: an interpolated column
// would render unqualified in a select list and bind to the subquery's own "id".
export const UPGRADE_STATUS = sql<UpgradeStatus>`(CASE WHEN "upgrades"."started_at" IS NULL THEN 'pending'
  WHEN ${batchHasUnfinishedJob(sql`"upgrades"."id"`)} THEN 'processing'
  ELSE 'executed' END)`;

/** A device's state within an upgrade, in the portal's words, from its engine job. */
export function deviceUpgradeState(job: DeviceJob): { state: DeviceUpgradeState; percent: number; reason: { code: string; message: string } | null } {
  switch (job.state) {
    case 'queued':
    case 'dispatched':
      return { state: 'pending', percent: 0, reason: null };
    case 'in-progress':
      return { state: isUpgradeStage(job.stage) ? job.stage : 'downloading', percent: job.progress, reason: null };
    case 'succeeded':
      return { state: 'succeeded', percent: 100, reason: null };
    case 'canceled':
      return { state: 'canceled', percent: job.progress, reason: job.error ?? null };
    default: // failed, expired
      return { state: 'failed', percent: job.progress, reason: job.error ?? { code: job.state, message: job.state } };
  }
}

const isUpgradeStage = (s: string | null): s is UpgradeStage => (upgradeStages as readonly (string | null)[]).includes(s);
const emptyCounts = () => Object.fromEntries(deviceUpgradeStates.map((s) => [s, 0])) as Record<DeviceUpgradeState, number>;

/**
 * Upgrades as installers manage them in the portal: a firmware, that model's devices, now or at a time.
 * At its time an upgrade becomes one `upgrade` job per device in the provisioning engine (batch id =
 * upgrade id); the engine delivers, times out and records them like any other job.
 */
export class UpgradeService {
  private scheduler: UpgradeScheduler | null = null;

  constructor(
    private readonly db: Db,
    private readonly devices: DeviceService,
    private readonly provisioning: ProvisioningService,
  ) {}

  /** The scheduler is made after this service (it calls start); until then nothing is scheduled. */
  useScheduler(scheduler: UpgradeScheduler) {
    this.scheduler = scheduler;
  }

  private scope(principal: Principal): SQL | undefined {
    return principal.role === 'distributor' ? undefined : or(eq(upgrades.installerId, principal.accountId), eq(upgrades.requestedBy, principal.accountId));
  }

  private async firmwareRow(id: string): Promise<FirmwareRow> {
    const rows = await this.db.select().from(firmware).where(eq(firmware.id, id)).limit(1);
    if (!rows[0]) throw badRequest('unknown_firmware', `no firmware ${id} in the catalogue`, { firmwareId: id });
    return rows[0];
  }

  /** Every MAC must be the caller's device of the firmware's model; devices already on the version are left out. */
  private async checkDevices(principal: Principal, fw: FirmwareRow, requested: string[]) {
    const macs = [...new Set(requested)];
    const owned = await this.devices.firmwareOf(macs, principal);
    const notYours = macs.filter((m) => !owned.has(m));
    const otherModel = macs
      .filter((m) => owned.has(m) && normalizeModel(owned.get(m)!.model ?? '') !== fw.model)
      .map((mac) => ({ mac, model: owned.get(mac)!.model }));
    if (notYours.length || otherModel.length) {
      const parts = [
        notYours.length ? `not your devices: ${notYours.join(', ')}` : '',
        otherModel.length ? `not ${fw.model} devices: ${otherModel.map((o) => `${o.mac} (${o.model ?? 'model unknown until it connects'})`).join(', ')}` : '',
      ].filter(Boolean);
      throw badRequest('invalid_devices', parts.join('; '), { notYours, otherModel });
    }
    const skipped: SkippedDevice[] = macs.filter((m) => owned.get(m)!.firmware === fw.version).map((mac) => ({ mac, reason: 'already_on_version' }));
    const targets = macs.filter((m) => owned.get(m)!.firmware !== fw.version);
    if (!targets.length) throw badRequest('already_on_version', `every device already runs ${fw.version}`, { macs });
    const owners = new Set(targets.map((m) => owned.get(m)!.installerId));
    const installerId = principal.role === 'installer' ? principal.accountId : owners.size === 1 ? [...owners][0]! : null;
    return { targets, skipped, installerId };
  }

  private static when(at: string | undefined | null): Date | null {
    if (at === undefined || at === null) return null;
    const date = new Date(at);
    if (date.getTime() <= Date.now()) throw badRequest('time_in_past', `the upgrade time ${at} is not in the future`, { at });
    return date;
  }

  async create(ctx: RequestContext, body: CreateUpgrade): Promise<Submitted<UpgradeDetail>> {
    const { principal } = ctx;
    const at = UpgradeService.when(body.at);
    const fw = await this.firmwareRow(body.firmwareId);
    const checked = await this.checkDevices(principal, fw, body.macs);
    return this.provisioning.submit(ctx, async (tx) => {
      // Shares the firmware row with other upgrades; a concurrent delete waits and then sees this upgrade.
      const locked = await tx.select({ id: firmware.id }).from(firmware).where(eq(firmware.id, fw.id)).for('share');
      if (!locked[0]) throw badRequest('unknown_firmware', `no firmware ${fw.id} in the catalogue`, { firmwareId: fw.id });
      const [upgrade] = await tx
        .insert(upgrades)
        .values({
          firmwareId: fw.id,
          model: fw.model,
          version: fw.version,
          installerId: checked.installerId,
          requestedBy: principal.actorId,
          macs: checked.targets,
          skipped: checked.skipped,
          at: at ?? new Date(),
          resetAfterUpgrade: body.resetAfterUpgrade,
          expirySeconds: body.expiresInSeconds ?? DEFAULT_EXPIRY_SECONDS,
        })
        .returning();
      const jobs = at ? [] : await this.startIn(tx, upgrade!, accountActor(principal));
      return {
        jobs,
        answer: await this.get(principal, upgrade!.id, tx),
        after: at ? () => this.scheduler!.follow(upgrade!.id, { to: at }) : undefined,
      };
    });
  }

  /** Turns a pending upgrade into one job per device, inside the caller's transaction. */
  private async startIn(tx: Tx, upgrade: UpgradeRow, actor: JobActor): Promise<JobRow[]> {
    const fw = upgrade.firmwareId ? (await tx.select().from(firmware).where(eq(firmware.id, upgrade.firmwareId)).limit(1))[0] : undefined;
    const current = await this.devices.firmwareOf(upgrade.macs, null, tx);
    const skipped = [...upgrade.skipped];
    const targets: string[] = [];
    for (const mac of upgrade.macs) {
      const device = current.get(mac);
      if (!fw) skipped.push({ mac, reason: 'firmware_deleted' });
      else if (!device) skipped.push({ mac, reason: 'device_deleted' });
      else if (device.firmware === upgrade.version) skipped.push({ mac, reason: 'already_on_version' });
      else targets.push(mac);
    }
    const rows = fw
      ? await this.provisioning.insertJobs(
          tx,
          actor,
          targets.map((mac) => ({
            kind: 'upgrade' as const,
            mac,
            installerId: current.get(mac)!.installerId,
            batchId: upgrade.id,
            expiresInSeconds: upgrade.expirySeconds,
            params: {
              firmwareId: fw.id,
              model: fw.model,
              version: fw.version,
              size: fw.size,
              sha256: fw.sha256,
              resetAfterUpgrade: upgrade.resetAfterUpgrade,
              fromVersion: current.get(mac)!.firmware,
            },
          })),
        )
      : [];
    await tx.update(upgrades).set({ startedAt: new Date(), macs: targets, skipped, updatedAt: new Date() }).where(eq(upgrades.id, upgrade.id));
    return rows;
  }

  /**
   * The scheduler's entry: starts the upgrade if it is still pending and due, at most once, and answers the
   * jobs it created. A retry after the queue refused the jobs finds the upgrade started and enqueues its
   * unfinished jobs again (BullMQ keeps the ones it has).
   */
  async start(upgradeId: string): Promise<string[]> {
    const ids = await this.db.transaction(async (tx) => {
      const rows = await tx
        .select()
        .from(upgrades)
        .where(and(eq(upgrades.id, upgradeId), isNull(upgrades.startedAt), lte(upgrades.at, new Date(Date.now() + 1000))))
        .for('update');
      if (!rows[0]) return [];
      return (await this.startIn(tx, rows[0], { accountId: rows[0].requestedBy, label: 'scheduler' })).map((j) => j.id);
    });
    const waiting = ids.length ? ids : (await this.jobsOf([upgradeId])).filter((j) => !finishedStates.includes(j.state)).map((j) => j.id);
    await this.provisioning.enqueue(waiting);
    return ids;
  }

  /** Pending upgrades and their times, for rescheduling after a restart. */
  async pending(): Promise<{ id: string; at: Date }[]> {
    return this.db.select({ id: upgrades.id, at: upgrades.at }).from(upgrades).where(isNull(upgrades.startedAt));
  }

  private jobsOf(ids: string[], q: Queryable = this.db): Promise<DeviceJob[]> {
    return this.provisioning.jobsOfBatches(ids, q);
  }

  private view(u: UpgradeRow, status: UpgradeStatus, deviceJobs: DeviceJob[]): UpgradeDetail {
    const byMac = new Map(deviceJobs.map((j) => [j.mac, j]));
    const counts = emptyCounts();
    const deviceStates = u.macs.map((mac) => {
      const job = byMac.get(mac);
      const s = job ? deviceUpgradeState(job) : { state: 'pending' as const, percent: 0, reason: null };
      counts[s.state]++;
      return { mac, ...s, jobId: job?.id ?? null, updatedAt: job?.updatedAt.toISOString() ?? null };
    });
    return {
      id: u.id,
      firmwareId: u.firmwareId,
      version: u.version,
      model: u.model,
      devices: u.macs.length,
      macs: u.macs,
      status,
      upgradeTime: u.at.toISOString(),
      resetAfterUpgrade: u.resetAfterUpgrade,
      counts,
      succeeded: counts.succeeded,
      failed: counts.failed,
      skipped: u.skipped,
      startedAt: u.startedAt?.toISOString() ?? null,
      executedAt: u.executedAt?.toISOString() ?? null,
      createdTime: u.createdAt.toISOString(),
      deviceStates,
    };
  }

  private async load(principal: Principal, id: string, q: Queryable = this.db): Promise<{ row: UpgradeRow; status: UpgradeStatus }> {
    const rows = await q
      .select({ row: upgrades, status: UPGRADE_STATUS })
      .from(upgrades)
      .where(and(eq(upgrades.id, id), this.scope(principal)))
      .limit(1);
    if (!rows[0]) throw notFound('upgrade', { upgradeId: id });
    return rows[0];
  }

  async get(principal: Principal, id: string, q: Queryable = this.db): Promise<UpgradeDetail> {
    const { row, status } = await this.load(principal, id, q);
    return this.view(row, status, await this.jobsOf([id], q));
  }

  async list(principal: Principal, q: { status?: UpgradeStatus; model?: string; page: number; pageSize: number }): Promise<Page<UpgradeView>> {
    const where = and(this.scope(principal), q.status ? sql`${UPGRADE_STATUS} = ${q.status}` : undefined, q.model ? eq(upgrades.model, normalizeModel(q.model)) : undefined);
    const page = await paginate(
      this.db
        .select({ row: upgrades, status: UPGRADE_STATUS })
        .from(upgrades)
        .where(where)
        .orderBy(desc(upgrades.createdAt))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(upgrades).where(where),
      (r) => r,
      q.page,
      q.pageSize,
    );
    // The page's device jobs in one query, then each upgrade's summary.
    const byUpgrade = new Map<string, DeviceJob[]>();
    for (const j of await this.jobsOf(page.items.map((r) => r.row.id))) {
      const list = byUpgrade.get(j.batchId!);
      if (list) list.push(j);
      else byUpgrade.set(j.batchId!, [j]);
    }
    const items = page.items.map(({ row, status }) => {
      const { deviceStates: _rows, ...summary } = this.view(row, status, byUpgrade.get(row.id) ?? []);
      return summary;
    });
    return { ...page, items };
  }

  /** Changes the time, the devices or the reset flag while the upgrade is pending. */
  async patch(ctx: RequestContext, id: string, body: PatchUpgrade): Promise<Submitted<UpgradeDetail>> {
    const { principal } = ctx;
    const { row } = await this.load(principal, id);
    if (row.startedAt) throw conflict('upgrade_started', `upgrade ${id} has started; only a pending upgrade can be changed`, { upgradeId: id });
    const at = body.at === undefined ? undefined : UpgradeService.when(body.at);
    let devices: { targets: string[]; skipped: SkippedDevice[]; installerId: string | null } | undefined;
    if (body.macs) {
      if (!row.firmwareId) throw conflict('firmware_deleted', 'the firmware of this upgrade is no longer in the catalogue');
      devices = await this.checkDevices(principal, await this.firmwareRow(row.firmwareId), body.macs);
    }
    const startNow = at === null;
    return this.provisioning.submit(ctx, async (tx) => {
      const [updated] = await tx
        .update(upgrades)
        .set({
          ...(at !== undefined ? { at: at ?? new Date() } : {}),
          ...(devices ? { macs: devices.targets, skipped: devices.skipped, installerId: devices.installerId } : {}),
          ...(body.resetAfterUpgrade !== undefined ? { resetAfterUpgrade: body.resetAfterUpgrade } : {}),
          updatedAt: new Date(),
        })
        .where(and(eq(upgrades.id, id), isNull(upgrades.startedAt)))
        .returning();
      if (!updated) throw conflict('upgrade_started', `upgrade ${id} has started; only a pending upgrade can be changed`, { upgradeId: id });
      const jobs = startNow ? await this.startIn(tx, updated, accountActor(principal)) : [];
      const scheduler = this.scheduler!;
      const after = startNow ? () => scheduler.follow(id, { from: row.at }) : at ? () => scheduler.follow(id, { from: row.at, to: at }) : undefined;
      return { jobs, answer: await this.get(principal, id, tx), after };
    });
  }

  /**
   * Deletes a pending upgrade or a finished record. An upgrade in progress answers 409, unless forced:
   * then the devices that have not started are canceled and the record stays (it answers the upgrade).
   */
  async remove(principal: Principal, id: string, force: boolean): Promise<UpgradeDetail | null> {
    const { row } = await this.load(principal, id);
    if (!row.startedAt) {
      const deleted = await this.db.delete(upgrades).where(and(eq(upgrades.id, id), isNull(upgrades.startedAt))).returning({ id: upgrades.id });
      if (deleted[0]) {
        await this.scheduler?.follow(id, { from: row.at });
        return null;
      }
    }
    const { status } = await this.load(principal, id);
    if (status === 'executed') {
      await this.db.delete(upgrades).where(eq(upgrades.id, id));
      return null;
    }
    if (!force) throw conflict('upgrade_in_progress', `upgrade ${id} is in progress; ?force=true cancels the devices that have not started`, { upgradeId: id });
    await this.provisioning.cancelNotStarted(id, accountActor(principal));
    return this.get(principal, id);
  }
}
