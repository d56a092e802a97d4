import { and, count, desc, eq, inArray, sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db, Tx } from '../db/client.js';
import type { DeviceService } from '../devices/service.js';
import { AppError, badRequest, conflict, notFound } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import { mergeAutop, parseAutop, renderAutopLine, type ParsedAutop } from './autop.js';
import type { ProvisioningEngine } from './engine.js';
import type { JobView } from './schemas.js';
import { auditLog, autopBatches, finishedStates, jobs, jobStates, regularAutop, type JobKind, type JobState } from './tables.js';

const DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600;
type JobRow = typeof jobs.$inferSelect;

export function jobView(j: JobRow): JobView {
  return {
    id: j.id,
    kind: j.kind,
    mac: j.mac,
    batchId: j.batchId,
    state: j.state,
    progress: j.progress,
    stage: j.stage ?? null,
    attempts: j.attempts,
    params: j.params,
    error: j.error ?? null,
    createdAt: j.createdAt.toISOString(),
    updatedAt: j.updatedAt.toISOString(),
    expiresAt: j.expiresAt.toISOString(),
    finishedAt: j.finishedAt?.toISOString() ?? null,
  };
}

/** Who makes jobs: an account, or the scheduler acting for the account that asked earlier. */
export interface JobActor {
  accountId: string | null;
  label: string;
}
export const accountActor = (principal: Principal): JobActor => ({ accountId: principal.accountId, label: `account:${principal.accountId}` });

export interface NewJob {
  kind: JobKind;
  mac: string;
  installerId: string;
  params?: Record<string, unknown>;
  batchId?: string;
  expiresInSeconds?: number;
}

/** Remote maintenance as installers ask for it; every request becomes recorded, queued jobs. */
export class ProvisioningService {
  constructor(
    private readonly db: Db,
    private readonly devices: DeviceService,
    private readonly engine: ProvisioningEngine,
  ) {}

  /** Records jobs and their audit entries inside the caller's transaction; enqueue them after it commits. */
  async insertJobs(tx: Tx, actor: JobActor, items: NewJob[]): Promise<JobRow[]> {
    if (!items.length) return [];
    const now = Date.now();
    const rows = await tx
      .insert(jobs)
      .values(
        items.map((i) => ({
          kind: i.kind,
          mac: i.mac,
          installerId: i.installerId,
          batchId: i.batchId ?? null,
          params: i.params ?? {},
          requestedBy: actor.accountId,
          expiresAt: new Date(now + (i.expiresInSeconds ?? DEFAULT_EXPIRY_SECONDS) * 1000),
        })),
      )
      .returning();
    await tx.insert(auditLog).values(
      rows.map((r) => ({ actor: actor.label, action: 'job.created', mac: r.mac, jobId: r.id, batchId: r.batchId, details: { kind: r.kind, params: r.params } })),
    );
    return rows;
  }

  /**
   * Records jobs in one transaction, then makes them runnable in BullMQ; answers only when both hold.
   * A new job needs no wake-up: its BullMQ job runs at once and either delivers or parks itself.
   * Should BullMQ refuse, the jobs stay recorded and the engine's reconciliation picks them up.
   */
  private async submit<T>(principal: Principal, work: (tx: Tx) => Promise<{ items: NewJob[]; extra: T }>): Promise<{ jobs: JobRow[]; extra: T }> {
    const { rows, extra } = await this.db.transaction(async (tx) => {
      const { items, extra } = await work(tx);
      return { rows: await this.insertJobs(tx, accountActor(principal), items), extra };
    });
    await this.enqueue(rows.map((r) => r.id));
    return { jobs: rows, extra };
  }

  /** Makes recorded jobs runnable; should BullMQ refuse, they stay recorded and reconciliation runs them. */
  async enqueue(ids: string[]): Promise<void> {
    try {
      await this.engine.enqueue(ids);
    } catch (err) {
      throw new AppError(503, 'queue_unavailable', 'the jobs are recorded but the queue did not accept them; they will run once it is back', { jobIds: ids, cause: (err as Error).message });
    }
  }

  /** Cancels the jobs of a batch that no device has started yet (queued, or delivered and unanswered). */
  async cancelNotStarted(batchId: string, actor: JobActor): Promise<string[]> {
    const rows = await this.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.batchId, batchId), inArray(jobs.state, ['queued', 'dispatched'])));
    const canceled: string[] = [];
    for (const row of rows) if (await this.engine.cancel(row, actor.label)) canceled.push(row.id);
    return canceled;
  }

  private async device(principal: Principal, mac: string) {
    const view = await this.devices.get(principal, mac); // 404 when not the caller's
    return view;
  }

  async getRegularAutop(principal: Principal, mac: string) {
    await this.device(principal, mac);
    const rows = await this.db.select().from(regularAutop).where(eq(regularAutop.mac, mac)).limit(1);
    return { mac, commands: (rows[0]?.lines ?? []).map(renderAutopLine), updatedAt: rows[0]?.updatedAt.toISOString() ?? null };
  }

  /** Replaces the device's regular Autop and delivers its effective configuration. */
  async putRegularAutop(principal: Principal, mac: string, commands: string | string[], expiresInSeconds?: number) {
    const device = await this.device(principal, mac);
    const parsed = parseAutop(commands);
    const { jobs: created } = await this.submit(principal, async (tx) => {
      await tx
        .insert(regularAutop)
        .values({ mac, lines: parsed.lines })
        .onConflictDoUpdate({ target: regularAutop.mac, set: { lines: parsed.lines, updatedAt: new Date() } });
      return { items: [{ kind: 'autop' as const, mac, installerId: device.installerId, params: { commands: parsed.lines.map(renderAutopLine) }, expiresInSeconds }], extra: null };
    });
    return { job: jobView(created[0]!), autop: await this.getRegularAutop(principal, mac), dropped: parsed.dropped };
  }

  async oneTimeAutop(principal: Principal, mac: string, commands: string | string[], expiresInSeconds?: number) {
    const device = await this.device(principal, mac);
    const parsed = parseAutop(commands);
    const { jobs: created } = await this.submit(principal, async () => ({
      items: [{ kind: 'autop-once' as const, mac, installerId: device.installerId, params: { lines: parsed.lines, commands: parsed.lines.map(renderAutopLine) }, expiresInSeconds }],
      extra: null,
    }));
    return { job: jobView(created[0]!), dropped: parsed.dropped };
  }

  /** Batch Autop: up to 500 of the caller's devices, one job each under one batch id. */
  async batchAutop(principal: Principal, body: { macs: string[]; commands: string | string[]; mode: 'regular' | 'once'; expiresInSeconds?: number }) {
    const macs = [...new Set(body.macs)];
    const owned = await this.devices.ownedMacs(principal, macs);
    const notYours = macs.filter((m) => !owned.has(m));
    if (notYours.length) throw badRequest('unknown_devices', `not your devices: ${notYours.join(', ')}`, { macs: notYours });
    const parsed: ParsedAutop = parseAutop(body.commands);
    const { jobs: created, extra: batchId } = await this.submit(principal, async (tx) => {
      const [batch] = await tx
        .insert(autopBatches)
        .values({ mode: body.mode, lines: parsed.lines, deviceCount: macs.length, installerId: principal.role === 'installer' ? principal.accountId : owned.get(macs[0]!)!, requestedBy: principal.accountId })
        .returning({ id: autopBatches.id });
      if (body.mode === 'regular') {
        // Batch lines join each device's regular Autop; a key already there takes the batch's value.
        const current = await tx.select().from(regularAutop).where(inArray(regularAutop.mac, macs));
        const byMac = new Map(current.map((r) => [r.mac, r.lines]));
        await tx
          .insert(regularAutop)
          .values(macs.map((mac) => ({ mac, lines: mergeAutop(byMac.get(mac) ?? [], parsed.lines) })))
          .onConflictDoUpdate({ target: regularAutop.mac, set: { lines: sql`excluded.lines`, updatedAt: new Date() } });
      }
      const kind: JobKind = body.mode === 'regular' ? 'autop' : 'autop-once';
      const params = body.mode === 'regular' ? { commands: parsed.lines.map(renderAutopLine) } : { lines: parsed.lines, commands: parsed.lines.map(renderAutopLine) };
      return {
        items: macs.map((mac) => ({ kind, mac, installerId: owned.get(mac)!, batchId: batch!.id, params, expiresInSeconds: body.expiresInSeconds })),
        extra: batch!.id,
      };
    });
    return { batchId, jobs: created.map(jobView), dropped: parsed.dropped };
  }

  async batchProgress(principal: Principal, batchId: string) {
    const rows = await this.db
      .select()
      .from(autopBatches)
      .where(and(eq(autopBatches.id, batchId), principal.role === 'installer' ? eq(autopBatches.installerId, principal.accountId) : undefined))
      .limit(1);
    const batch = rows[0];
    if (!batch) throw notFound('batch', { batchId });
    const states = await this.db.select({ state: jobs.state, n: count() }).from(jobs).where(eq(jobs.batchId, batchId)).groupBy(jobs.state);
    const counts = Object.fromEntries(jobStates.map((s) => [s, 0])) as Record<JobState, number>;
    for (const s of states) counts[s.state] = s.n;
    const finished = finishedStates.reduce((a, s) => a + counts[s], 0) === batch.deviceCount;
    return { batchId, mode: batch.mode, commands: batch.lines.map(renderAutopLine), devices: batch.deviceCount, counts, finished, createdAt: batch.createdAt.toISOString() };
  }

  async reboot(principal: Principal, mac: string, expiresInSeconds?: number) {
    const device = await this.device(principal, mac);
    const { jobs: created } = await this.submit(principal, async () => ({ items: [{ kind: 'reboot' as const, mac, installerId: device.installerId, expiresInSeconds }], extra: null }));
    return { job: jobView(created[0]!) };
  }

  /** A reset ends the device's one-time Autop not yet applied ("not valid once you reset the device"). */
  async reset(principal: Principal, mac: string, mode: 'factory' | 'config', expiresInSeconds?: number) {
    const device = await this.device(principal, mac);
    const { jobs: created, extra: canceled } = await this.submit(principal, async (tx) => {
      const canceled = await this.engine.cancelOneTimeAutop(mac, `a ${mode} reset was requested`, tx);
      return { items: [{ kind: 'reset' as const, mac, installerId: device.installerId, params: { mode }, expiresInSeconds }], extra: canceled };
    });
    await this.engine.settle(canceled);
    return { job: jobView(created[0]!), canceledOneTimeJobs: canceled };
  }

  async setConnectType(principal: Principal, mac: string, connectType: 'udp' | 'tcp' | 'tls', expiresInSeconds?: number) {
    const device = await this.device(principal, mac);
    const { jobs: created } = await this.submit(principal, async (tx) => {
      await this.devices.setConnectType(principal, mac, connectType, tx);
      return { items: [{ kind: 'connect-type' as const, mac, installerId: device.installerId, params: { connectType }, expiresInSeconds }], extra: null };
    });
    return { job: jobView(created[0]!) };
  }

  private scope(principal: Principal): SQL | undefined {
    return principal.role === 'distributor' ? undefined : eq(jobs.installerId, principal.accountId);
  }

  async listJobs(principal: Principal, q: { mac?: string; state?: JobState; kind?: JobKind; batchId?: string; page: number; pageSize: number }): Promise<Page<JobView>> {
    const where = and(
      this.scope(principal),
      q.mac ? eq(jobs.mac, q.mac) : undefined,
      q.state ? eq(jobs.state, q.state) : undefined,
      q.kind ? eq(jobs.kind, q.kind) : undefined,
      q.batchId ? eq(jobs.batchId, q.batchId) : undefined,
    );
    return paginate(
      this.db
        .select()
        .from(jobs)
        .where(where)
        .orderBy(desc(jobs.seq))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(jobs).where(where),
      jobView,
      q.page,
      q.pageSize,
    );
  }

  private async jobRow(principal: Principal, id: string): Promise<JobRow> {
    const rows = await this.db
      .select()
      .from(jobs)
      .where(and(eq(jobs.id, id), this.scope(principal)))
      .limit(1);
    if (!rows[0]) throw notFound('job', { jobId: id });
    return rows[0];
  }

  async getJob(principal: Principal, id: string): Promise<JobView> {
    return jobView(await this.jobRow(principal, id));
  }

  async cancelJob(principal: Principal, id: string): Promise<JobView> {
    const row = await this.jobRow(principal, id);
    if (finishedStates.includes(row.state) || !(await this.engine.cancel(row, `account:${principal.accountId}`))) {
      throw conflict('job_finished', `job ${id} has already finished (${(await this.jobRow(principal, id)).state})`, { jobId: id });
    }
    return jobView(await this.jobRow(principal, id));
  }

  async audit(principal: Principal, q: { mac?: string; jobId?: string; page: number; pageSize: number }) {
    // An installer sees the audit of its own jobs.
    const mine = principal.role === 'distributor' ? undefined : inArray(auditLog.jobId, this.db.select({ id: jobs.id }).from(jobs).where(eq(jobs.installerId, principal.accountId)));
    const where = and(mine, q.mac ? eq(auditLog.mac, q.mac) : undefined, q.jobId ? eq(auditLog.jobId, q.jobId) : undefined);
    return paginate(
      this.db
        .select()
        .from(auditLog)
        .where(where)
        .orderBy(desc(auditLog.at))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(auditLog).where(where),
      (r) => ({ ...r, at: r.at.toISOString() }),
      q.page,
      q.pageSize,
    );
  }
}
