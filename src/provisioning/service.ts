import { and, count, desc, eq, inArray, sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import type { DeviceService } from '../devices/service.js';
import { badRequest, conflict, notFound, unavailable } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import { mergeAutop, parseAutop, renderAutopLine, type ParsedAutop } from './autop.js';
import { QueueUnavailableError, type CreatedJob, type ProvisioningEngine } from './engine.js';
import type { DeviceOwners } from './device-owners.js';
import type { GroupedEnqueue } from './grouped-enqueue.js';
import type { IdempotencyKey, IdempotentRequests } from './idempotency.js';
import type { JobActor, JobRow, NewJob } from './job-store.js';
import type { JobView } from './schemas.js';
import { auditLog, autopBatches, finishedStates, jobs, jobStates, regularAutop, unfinishedState, type JobKind, type JobState } from './tables.js';

const DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600;

export type { JobActor } from './job-store.js';

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
    result: j.result ?? null,
    createdAt: j.createdAt.toISOString(),
    updatedAt: j.updatedAt.toISOString(),
    expiresAt: j.expiresAt.toISOString(),
    finishedAt: j.finishedAt?.toISOString() ?? null,
  };
}

export const accountActor = (principal: Principal): JobActor => ({ accountId: principal.actorId, label: `account:${principal.actorId}` });

/** A job as a request asks for it; its expiry is counted from now. */
export interface JobRequest extends Omit<NewJob, 'expiresAt'> {
  expiresInSeconds?: number;
}

/** Who asks, and with which Idempotency-Key (if any). */
export interface RequestContext {
  principal: Principal;
  idempotency?: IdempotencyKey;
}

/** An answer to a job-creating request; `replayed` when it is the stored answer of an earlier request with the same key. */
export interface Submitted<T> {
  answer: T;
  replayed: boolean;
}

/** Remote maintenance as installers ask for it; every request becomes recorded, queued jobs. */
export class ProvisioningService {
  constructor(
    private readonly db: Db,
    private readonly devices: DeviceService,
    private readonly engine: ProvisioningEngine,
    private readonly idempotency: IdempotentRequests,
    /** The request path's shortcuts: device owners kept in memory, twins enqueued per tick (absent: read and enqueue each time). */
    private readonly owners: DeviceOwners | null = null,
    private readonly queue: GroupedEnqueue | null = null,
  ) {}

  /**
   * Records jobs (with their audit rows) inside the caller's transaction; they run once `submit` enqueues
   * them. With `claim` the statement claims that Idempotency-Key too (one-statement work).
   */
  insertJobs(tx: Queryable, actor: JobActor, items: JobRequest[], claim?: IdempotencyKey): Promise<CreatedJob[]> {
    const now = this.engine.now();
    return this.engine.create(
      tx,
      actor,
      items.map(({ expiresInSeconds, ...i }) => ({ ...i, expiresAt: new Date(now + (expiresInSeconds ?? DEFAULT_EXPIRY_SECONDS) * 1000) })),
      {},
      claim,
    );
  }

  /**
   * Runs a job-creating request: `work` records what it records and builds its answer, then the jobs are
   * given to the queue, grouped with the other requests of the tick. Work of `oneStatement` runs as that
   * one statement, with no transaction around it (BEGIN and COMMIT would be two more round trips); with an
   * Idempotency-Key that statement claims the key and one more stores the answer. Other work runs in a
   * transaction whose last statement claims the key with the answer. A retry with the same key finds the
   * key taken: its work is undone and it gets the stored answer (its jobs re-offered to the queue, which
   * keeps the ones it has). When Redis does not take the jobs in time the answer is 503
   * `queue_unavailable` with the job ids: they are recorded and run once reconciliation finds Redis back.
   */
  async submit<T>(
    ctx: Pick<RequestContext, 'idempotency'>,
    /**
     * Records what the request records and builds its answer; `after` runs once committed and must not
     * throw. One-statement work hands `claim` to `insertJobs`.
     */
    work: (tx: Tx, claim?: IdempotencyKey) => Promise<{ jobs: JobRow[]; answer: T; after?: () => Promise<void> }>,
    oneStatement = false,
  ): Promise<Submitted<T>> {
    const key = ctx.idempotency;
    const made = (done: { jobs: JobRow[]; answer: T; after?: () => Promise<void> }) => ({
      replayed: false,
      answer: done.answer,
      jobIds: done.jobs.map((j) => j.id),
      urgent: done.jobs.filter((j) => j.urgent).map((j) => j.id),
      after: done.after,
    });
    let result: { replayed: boolean; answer: T; jobIds: string[]; urgent?: string[]; after?: () => Promise<void> };
    const replay = Symbol('replay');
    try {
      if (oneStatement) {
        // (Db runs every query Tx does.) A key held by another request fails the statement: nothing recorded.
        const done = await work(this.db as unknown as Tx, key);
        if (key) await this.idempotency.answer(key, done.answer);
        result = made(done);
      } else {
        result = await this.db.transaction(async (tx) => {
          const done = await work(tx);
          if (key && !(await this.idempotency.claimAnswered(tx, key, done.answer, done.jobs.map((j) => j.id), this.engine.now()))) throw replay;
          return made(done);
        });
      }
    } catch (err) {
      if (!key || (err !== replay && !this.idempotency.isHeld(err))) throw err;
      const earlier = await this.idempotency.earlier(key, this.engine.now());
      // Swept between the claim and this read (or expired): the key is free, so the request runs afresh.
      if (!earlier) return this.submit(ctx, work, oneStatement);
      result = { replayed: true, answer: earlier.body as T, jobIds: earlier.jobIds };
    }
    // A replay's urgent jobs were expedited by the first request (or their twins drive them).
    await this.enqueue(result.jobIds, result.urgent);
    await result.after?.();
    return { answer: result.answer, replayed: result.replayed };
  }

  /**
   * Makes recorded jobs runnable, the `urgent` among them delivered at once (the engine's fast path);
   * should the queue refuse, they stay recorded and reconciliation runs them.
   */
  async enqueue(ids: string[], urgent: string[] = []): Promise<void> {
    if (!ids.length) return;
    try {
      if (urgent.length) await this.engine.expedite(urgent);
      const others = urgent.length ? ids.filter((id) => !urgent.includes(id)) : ids;
      if (others.length) await (this.queue ? this.queue.add(others) : this.engine.enqueue(others));
    } catch (err) {
      if (!(err instanceof QueueUnavailableError)) throw err;
      throw unavailable('queue_unavailable', 'the jobs are recorded but the queue did not take them; they will run once it is back', { jobIds: ids });
    }
  }

  /**
   * Provisions devices whose directory documents changed: one `provision` job each, recorded as the
   * directory's, unless a job carrying the configuration still waits undelivered (it renders the newest
   * configuration when it is delivered: the engine builds a command only once its job has left `queued`).
   * Deleted devices are skipped.
   */
  async followDirectory(macs: string[]): Promise<string[]> {
    const owners = await this.devices.firmwareOf(macs, null);
    if (!owners.size) return [];
    const waiting = await this.db
      .select({ mac: jobs.mac, kind: jobs.kind })
      .from(jobs)
      .where(and(inArray(jobs.mac, [...owners.keys()]), eq(jobs.state, 'queued')));
    const covered = new Set(waiting.filter((j) => this.engine.carriesConfiguration(j.kind)).map((j) => j.mac));
    const items: JobRequest[] = [...owners]
      .filter(([mac]) => !covered.has(mac))
      .map(([mac, { installerId }]) => ({ kind: 'provision', mac, installerId, params: { reason: 'directory' } }));
    if (!items.length) return [];
    const created = await this.db.transaction((tx) => this.insertJobs(tx, { accountId: null, label: 'directory' }, items));
    const ids = created.map((j) => j.id);
    try {
      await this.engine.enqueue(ids);
    } catch (err) {
      // Recorded: reconciliation gives them their twins once the queue is back.
      if (!(err instanceof QueueUnavailableError)) throw err;
    }
    return ids;
  }

  /** Cancels the jobs of a batch that no device has started yet (queued, or delivered and unanswered). */
  async cancelNotStarted(batchId: string, actor: JobActor): Promise<string[]> {
    return this.engine.cancelBatch(batchId, ['queued', 'dispatched'], actor.label);
  }

  /** The installer owning the caller's device (404 when it is not the caller's). */
  private async installerOf(principal: Principal, mac: string): Promise<string> {
    return this.owners ? this.owners.installerOf(principal, mac) : (await this.devices.get(principal, mac)).installerId;
  }

  async getRegularAutop(principal: Principal, mac: string) {
    await this.installerOf(principal, mac);
    const rows = await this.db.select().from(regularAutop).where(eq(regularAutop.mac, mac)).limit(1);
    return { mac, commands: (rows[0]?.lines ?? []).map(renderAutopLine), updatedAt: rows[0]?.updatedAt.toISOString() ?? null };
  }

  /** Replaces the device's regular Autop and delivers its effective configuration. */
  async putRegularAutop(ctx: RequestContext, mac: string, commands: string | string[], expiresInSeconds?: number) {
    const installerId = await this.installerOf(ctx.principal, mac);
    const parsed = parseAutop(commands);
    return this.submit(ctx, async (tx) => {
      const [set] = await tx
        .insert(regularAutop)
        .values({ mac, lines: parsed.lines })
        .onConflictDoUpdate({ target: regularAutop.mac, set: { lines: parsed.lines, updatedAt: new Date(this.engine.now()) } })
        .returning({ updatedAt: regularAutop.updatedAt });
      const created = await this.insertJobs(tx, accountActor(ctx.principal), [{ kind: 'autop', mac, installerId, params: { lines: parsed.lines.length }, expiresInSeconds }]);
      const autop = { mac, commands: parsed.lines.map(renderAutopLine), updatedAt: set!.updatedAt.toISOString() };
      return { jobs: created, answer: { job: jobView(created[0]!), autop, dropped: parsed.dropped } };
    });
  }

  async oneTimeAutop(ctx: RequestContext, mac: string, commands: string | string[], expiresInSeconds?: number) {
    const installerId = await this.installerOf(ctx.principal, mac);
    const parsed = parseAutop(commands);
    return this.submit(
      ctx,
      async (tx, claim) => {
        const created = await this.insertJobs(tx, accountActor(ctx.principal), [{ kind: 'autop-once', mac, installerId, params: { lines: parsed.lines }, expiresInSeconds }], claim);
        return { jobs: created, answer: { job: jobView(created[0]!), dropped: parsed.dropped } };
      },
      true,
    );
  }

  /** Batch Autop: up to 500 of the caller's devices, one job each under one batch id. */
  async batchAutop(ctx: RequestContext, body: { macs: string[]; commands: string | string[]; mode: 'regular' | 'once'; expiresInSeconds?: number }) {
    const { principal } = ctx;
    const macs = [...new Set(body.macs)];
    const owned = await this.devices.ownedMacs(principal, macs);
    const notYours = macs.filter((m) => !owned.has(m));
    if (notYours.length) throw badRequest('unknown_devices', `not your devices: ${notYours.join(', ')}`, { macs: notYours });
    const parsed: ParsedAutop = parseAutop(body.commands);
    return this.submit(ctx, async (tx) => {
      const [batch] = await tx
        .insert(autopBatches)
        .values({ mode: body.mode, lines: parsed.lines, deviceCount: macs.length, installerId: principal.role === 'installer' ? principal.accountId : owned.get(macs[0]!)!, requestedBy: principal.actorId })
        .returning({ id: autopBatches.id });
      if (body.mode === 'regular') {
        // Batch lines join each device's regular Autop; a key already there takes the batch's value.
        const current = await tx.select().from(regularAutop).where(inArray(regularAutop.mac, macs));
        const byMac = new Map(current.map((r) => [r.mac, r.lines]));
        await tx
          .insert(regularAutop)
          .values(macs.map((mac) => ({ mac, lines: mergeAutop(byMac.get(mac) ?? [], parsed.lines) })))
          .onConflictDoUpdate({ target: regularAutop.mac, set: { lines: sql`excluded.lines`, updatedAt: new Date(this.engine.now()) } });
      }
      const kind: JobKind = body.mode === 'regular' ? 'autop' : 'autop-once';
      // The batch keeps its lines once: a regular job's params count them (the configuration carries them), a
      // one-time job reads them from its batch when it is delivered.
      const params = { lines: parsed.lines.length };
      const created = await this.insertJobs(
        tx,
        accountActor(principal),
        macs.map((mac) => ({ kind, mac, installerId: owned.get(mac)!, batchId: batch!.id, params, expiresInSeconds: body.expiresInSeconds })),
      );
      return { jobs: created, answer: { batchId: batch!.id, jobs: created.map(jobView), dropped: parsed.dropped } };
    });
  }

  async batchProgress(principal: Principal, batchId: string) {
    const rows = await this.db
      .select()
      .from(autopBatches)
      .where(and(eq(autopBatches.id, batchId), principal.role === 'installer' ? eq(autopBatches.installerId, principal.accountId) : undefined))
      .limit(1);
    const batch = rows[0];
    if (!batch) throw notFound('batch', { batchId });
    const counts = await this.batchCounts(batchId);
    const finished = finishedStates.reduce((a, s) => a + counts[s], 0) === batch.deviceCount;
    return { batchId, mode: batch.mode, commands: batch.lines.map(renderAutopLine), devices: batch.deviceCount, counts, finished, createdAt: batch.createdAt.toISOString() };
  }

  private async batchCounts(batchId: string): Promise<Record<JobState, number>> {
    const states = await this.db.select({ state: jobs.state, n: count() }).from(jobs).where(eq(jobs.batchId, batchId)).groupBy(jobs.state);
    const counts = Object.fromEntries(jobStates.map((s) => [s, 0])) as Record<JobState, number>;
    for (const s of states) counts[s.state] = s.n;
    return counts;
  }

  /** A request that makes one job for one of the caller's devices. */
  private single(ctx: RequestContext, mac: string, kind: JobKind, params: Record<string, unknown>, expiresInSeconds: number | undefined, before?: (tx: Tx) => Promise<void>) {
    return this.installerOf(ctx.principal, mac).then((installerId) =>
      this.submit(
        ctx,
        async (tx, claim) => {
          await before?.(tx);
          const created = await this.insertJobs(tx, accountActor(ctx.principal), [{ kind, mac, installerId, params, expiresInSeconds }], claim);
          return { jobs: created, answer: { job: jobView(created[0]!) } };
        },
        !before,
      ),
    );
  }

  /** A job of any registered kind for one of the caller's devices (a plug-in kind's request). */
  async requestJob(ctx: RequestContext, mac: string, kind: JobKind, params: Record<string, unknown>, expiresInSeconds?: number) {
    if (!this.engine.knowsKind(kind)) throw badRequest('unknown_kind', `no job kind ${kind}`, { kind, kinds: this.engine.kindNames() });
    return this.single(ctx, mac, kind, params, expiresInSeconds);
  }

  reboot(ctx: RequestContext, mac: string, expiresInSeconds?: number) {
    return this.single(ctx, mac, 'reboot', {}, expiresInSeconds);
  }

  /** A reset ends the device's one-time Autop not yet applied (a side effect the `autop-once` kind registers). */
  async reset(ctx: RequestContext, mac: string, mode: 'factory' | 'config', expiresInSeconds?: number) {
    const installerId = await this.installerOf(ctx.principal, mac);
    return this.submit(ctx, async (tx) => {
      const created = await this.insertJobs(tx, accountActor(ctx.principal), [{ kind: 'reset', mac, installerId, params: { mode }, expiresInSeconds }]);
      const ended = created[0]!.ended;
      return { jobs: created, answer: { job: jobView(created[0]!), canceledOneTimeJobs: ended }, after: () => this.engine.settle(ended) };
    });
  }

  setConnectType(ctx: RequestContext, mac: string, connectType: 'udp' | 'tcp' | 'tls', expiresInSeconds?: number) {
    return this.single(ctx, mac, 'connect-type', { connectType }, expiresInSeconds, (tx) => this.devices.setConnectType(ctx.principal, mac, connectType, tx));
  }

  private scope(principal: Principal): SQL | undefined {
    if (principal.role === 'distributor') return undefined;
    // A property manager sees the jobs of the devices placed in its sites.
    return and(eq(jobs.installerId, principal.accountId), principal.sites ? inArray(jobs.mac, this.devices.visibleMacs(principal)) : undefined);
  }

  async listJobs(principal: Principal, q: { mac?: string; state?: JobState; kind?: JobKind; batchId?: string; page: number; pageSize: number }): Promise<Page<JobView>> {
    if (q.kind !== undefined && !this.engine.knowsKind(q.kind)) throw badRequest('unknown_kind', `no job kind ${q.kind}`, { kind: q.kind, kinds: this.engine.kindNames() });
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
    if (finishedStates.includes(row.state) || !(await this.engine.cancel(row, `account:${principal.actorId}`))) {
      throw conflict('job_finished', `job ${id} has already finished (${(await this.jobRow(principal, id)).state})`, { jobId: id });
    }
    return jobView(await this.jobRow(principal, id));
  }

  async audit(principal: Principal, q: { mac?: string; jobId?: string; page: number; pageSize: number }) {
    // An installer sees the audit of its own jobs.
    const mine = principal.role === 'distributor' ? undefined : inArray(auditLog.jobId, this.db.select({ id: jobs.id }).from(jobs).where(this.scope(principal)));
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

  // ---- what other domains ask of jobs (they never touch the jobs table) ----------------------------

  /** The jobs of these batches (an upgrade's devices), in creation order. */
  async jobsOfBatches(batchIds: string[], q: Queryable = this.db): Promise<JobRow[]> {
    if (!batchIds.length) return [];
    return q.select().from(jobs).where(inArray(jobs.batchId, batchIds)).orderBy(jobs.seq);
  }
}

// Conditions other domains put into their own queries, so they never name the jobs table themselves.

/** The batch whose id is `batchId` (an upgrade's id) still has an unfinished job. */
export const batchHasUnfinishedJob = (batchId: SQL) => sql`EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = ${batchId} AND ${unfinishedState('j')})`;

/** The device has an unfinished job of this kind whose params hold `value` under `param`. */
export const deviceHasUnfinishedJob = (mac: string, kind: JobKind, param: string, value: string) =>
  sql`EXISTS (SELECT 1 FROM jobs j WHERE j.mac = ${mac} AND j.kind = ${kind} AND j.params->>${param} = ${value} AND ${unfinishedState('j')})`;

/** When the last job of the batch whose id is `batchId` finished; null while one is unfinished. */
export const batchFinishedAt = (batchId: SQL) =>
  sql<Date | null>`(SELECT CASE WHEN bool_and(j.finished_at IS NOT NULL) THEN max(j.finished_at) END FROM jobs j WHERE j.batch_id = ${batchId})`;
