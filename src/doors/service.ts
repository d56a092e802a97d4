import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { accounts } from '../accounts/tables.js';
import type { AppStations } from '../calls/app-stations.js';
import { appStations, doorEvents, type DoorRequester } from '../calls/tables.js';
import type { Db } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import type { DeviceService } from '../devices/service.js';
import type { DirectoryService } from '../directory/service.js';
import type { CommandChannel } from '../provisioning/channel.js';
import type { IdempotencyKey } from '../provisioning/idempotency.js';
import type { ProvisioningService } from '../provisioning/service.js';
import { jobs } from '../provisioning/tables.js';
import { Nap } from '../shared/nap.js';
import { conflict, DomainError, forbidden, notFound } from '../shared/errors.js';
import { OPEN_DOOR, type OpenDoorParams } from './open-door-kind.js';

/** Who asks to open: an account with its bearer token, or an app station with its SIP credentials. */
export type DoorCaller = { principal: Principal } | { app: string };

export interface OpenDoorAnswer {
  /** `opened`: the device confirmed; `failed`: it said it could not; `pending`: no answer within the wait. */
  outcome: 'opened' | 'failed' | 'pending';
  doorEventId: string;
  job: { id: string; state: string; expiresAt: string; error: { code: string; message: string } | null };
}

export interface RemoteDoorsOptions {
  db: Db;
  devices: Pick<DeviceService, 'get'>;
  directory: Pick<DirectoryService, 'of'>;
  provisioning: Pick<ProvisioningService, 'insertJobs' | 'submit'>;
  apps: Pick<AppStations, 'account' | 'addressBook'>;
  channel: Pick<CommandChannel, 'connectedSince'>;
  /** How long an opening stays deliverable (default 10 s): a door opened late is worse than one not opened. */
  expirySeconds: number;
  /** How long the request waits for the device's answer before answering 202 with the job. */
  waitMs: number;
  /** Jobs this process finished (a hint to read the job now); other processes' are found by reading it. */
  finishes?: (listener: (ids: string[]) => void) => () => void;
}

/** How long the wait reads the job apart: soon at first (the device answers within milliseconds), then less often. */
const POLL_MS = [5, 10, 10, 20, 20, 50];

const FINAL = new Set(['succeeded', 'failed', 'expired', 'canceled']);

/**
 * Opening a door from the cloud (issue 19): checks who may open which relay, records every attempt in the
 * door log (refused ones too), makes an urgent `open-door` job delivered at once, and waits a moment for
 * the device's answer. The door log row's outcome follows the job (the door-log sink of the job events).
 */
export class RemoteDoors {
  constructor(private readonly opts: RemoteDoorsOptions) {}

  async open(caller: DoorCaller, mac: string, relay: number, idempotency?: IdempotencyKey): Promise<{ confirmed: boolean; answer: OpenDoorAnswer }> {
    const { db } = this.opts;
    // Independent reads side by side: under load each round trip waits its turn, and a door is opened now.
    const placing = this.opts.directory.of([mac]);
    const [who, places, since] = await Promise.all([this.requester(caller, mac, placing), placing, this.opts.channel.connectedSince(mac)]);
    const place = places.get(mac) ?? null;
    const log = { mac, relay, siteId: place?.siteId ?? null, requester: who.kind, requestedBy: who.by, apartmentId: who.apartmentId ?? place?.apartmentId ?? null };
    // Every attempt by a caller who may see the device is logged, refused ones with their reason.
    const refuse = async (error: DomainError): Promise<never> => {
      await db.insert(doorEvents).values({ ...log, method: 'remote', outcome: 'refused', reason: error.code, eventId: `refused-${randomUUID()}`, occurredAt: new Date(), receivedAt: new Date() });
      throw error;
    };
    if (who.refusal) await refuse(who.refusal);
    const r = who.relays[relay - 1];
    if (!r) await refuse(notFoundRelay(relay, who.relays.length));
    if (!r!.enabled || !r!.accessMethods.includes('homepage')) await refuse(new DomainError('forbidden', 'relay_not_remote', `relay ${relay} does not open from the cloud: its access methods do not include "homepage" (Unlock in homepage), or it is disabled`, { relay }));
    if (since === null) await refuse(conflict('device_offline', 'the device is not connected: a door is opened now or not at all', { mac }));

    const params: OpenDoorParams = { relay, requestedBy: { kind: who.kind, name: who.name, by: who.kind === 'app' ? who.by : null } };
    const { answer } = await this.opts.provisioning.submit({ ...(idempotency ? { idempotency } : {}) }, async (tx) => {
      const [job] = await this.opts.provisioning.insertJobs(tx, { accountId: who.accountId, label: who.kind === 'app' ? `app:${who.by}` : `account:${who.by}` }, [
        { kind: OPEN_DOOR, mac, installerId: who.installerId, params: params as unknown as Record<string, unknown>, expiresInSeconds: this.opts.expirySeconds },
      ]);
      const now = new Date();
      const [row] = await tx
        .insert(doorEvents)
        .values({ ...log, method: 'remote', outcome: 'pending', jobId: job!.id, eventId: `job-${job!.id}`, occurredAt: now, receivedAt: now })
        .returning({ id: doorEvents.id });
      return { jobs: [job!], answer: { doorEventId: row!.id, jobId: job!.id } };
    });
    return this.await(answer.jobId, answer.doorEventId);
  }

  /** Reads the job until it ends or the wait is over: at once when this process finished it, else now and then. */
  private async await(jobId: string, doorEventId: string): Promise<{ confirmed: boolean; answer: OpenDoorAnswer }> {
    const deadline = Date.now() + this.opts.waitMs;
    const nap = new Nap();
    const off = this.opts.finishes?.((ids) => ids.includes(jobId) && nap.wake());
    try {
      return await this.read(jobId, doorEventId, deadline, (ms) => nap.sleep(ms));
    } finally {
      off?.();
    }
  }

  private async read(jobId: string, doorEventId: string, deadline: number, pause: (ms: number) => Promise<void>): Promise<{ confirmed: boolean; answer: OpenDoorAnswer }> {
    for (let n = 0; ; n++) {
      const [job] = await this.opts.db.select({ id: jobs.id, state: jobs.state, expiresAt: jobs.expiresAt, error: jobs.error }).from(jobs).where(eq(jobs.id, jobId));
      const final = FINAL.has(job!.state);
      if (final || Date.now() >= deadline) {
        const outcome = job!.state === 'succeeded' ? 'opened' : final ? 'failed' : 'pending';
        return { confirmed: final, answer: { outcome, doorEventId, job: { id: job!.id, state: job!.state, expiresAt: job!.expiresAt.toISOString(), error: (job!.error as OpenDoorAnswer['job']['error']) ?? null } } };
      }
      await pause(Math.min(POLL_MS[Math.min(n, POLL_MS.length - 1)]!, Math.max(1, deadline - Date.now())));
    }
  }

  /**
   * Who asks, and the device as they may see it. An account sees the device as the API does (its
   * installer's, or in a property manager's sites); an app only devices of its site, and may open only
   * those its address book lists with door release. A device the caller cannot see is 404, not logged.
   */
  private async requester(caller: DoorCaller, mac: string, placing: ReturnType<DirectoryService['of']>) {
    if ('principal' in caller) {
      const p = caller.principal;
      const [device, [account]] = await Promise.all([this.opts.devices.get(p, mac), this.opts.db.select({ name: accounts.name }).from(accounts).where(eq(accounts.id, p.actorId))]);
      const kind: DoorRequester = p.role === 'property-manager' ? 'property-manager' : p.role === 'distributor' ? 'distributor' : p.subInstaller ? 'sub-installer' : 'installer';
      return {
        kind,
        by: p.actorId,
        accountId: p.actorId,
        name: account?.name ?? null,
        installerId: device.installerId,
        relays: device.relays,
        apartmentId: null as string | null,
        refusal: p.role === 'distributor' ? forbidden('a distributor does not open doors: the installer, its sub-installers, property managers and apps do') : null,
      };
    }
    const station = await this.opts.apps.account(caller.app);
    if (!station) throw notFound('device', { mac });
    const [[device], places, [row], listing] = await Promise.all([
      deviceFacts(this.opts.db, [mac]),
      placing,
      this.opts.db.select({ name: appStations.name }).from(appStations).where(eq(appStations.sipNumber, caller.app)),
      this.opts.apps.addressBook(caller.app),
    ]);
    if (!device || places.get(mac)?.siteId !== station.siteId) throw notFound('device', { mac });
    const book = listing ?? [];
    const listed = book.some((e) => e.sipNumber === device.sipNumber && e.doorRelease && !e.ixgStation);
    return {
      kind: 'app' as const,
      by: caller.app,
      accountId: null,
      name: row?.name ?? null,
      installerId: device.installerId,
      relays: device.relays,
      apartmentId: station.apartmentId,
      refusal: listed ? null : new DomainError('forbidden', 'not_in_address_book', "the device is not a door with door release in the app's address book", { mac }),
    };
  }
}

const notFoundRelay = (relay: number, count: number) => new DomainError('not_found', 'relay_not_found', `the device has ${count} relay(s); there is no relay ${relay}`, { relay, relays: count });
