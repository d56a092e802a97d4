import { isIP } from 'node:net';
import { and, count, desc, eq, gte, inArray, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { recordWrite } from '../audit/service.js';
import type { Db } from '../db/client.js';
import { emitEvents } from '../events/outbox.js';
import { outboundEvents } from '../events/tables.js';
import { badRequest, conflict, forbidden, notFound } from '../shared/errors.js';
import { paginate, type Page } from '../shared/pagination.js';
import type { CreateEndpointInput, DeliveryView, EndpointView, PatchEndpointInput } from './schemas.js';
import { parkDeliveries, resumeDeliveries } from './delivery.js';
import { newSecret } from './signing.js';
import type { AddressPolicy } from './ssrf.js';
import { webhookAttempts, webhookDeliveries, webhookEndpoints } from './tables.js';

type EndpointRow = typeof webhookEndpoints.$inferSelect;
const MAX_ENDPOINTS = 20;
const iso = (d: Date | null) => d?.toISOString() ?? null;

const endpointView = (e: EndpointRow): EndpointView => ({
  id: e.id,
  url: e.url,
  description: e.description,
  eventTypes: e.eventTypes,
  enabled: e.enabled,
  disabledReason: e.disabledReason,
  previousSecretUntil: e.previousSecretUntil && e.previousSecretUntil > new Date() ? e.previousSecretUntil.toISOString() : null,
  createdAt: e.createdAt.toISOString(),
  updatedAt: e.updatedAt.toISOString(),
});

/**
 * Webhook endpoints of installers (their sub-installers act for them) and distributors, their secrets,
 * delivery log and replays. Property managers and apps have none.
 */
export class WebhookEndpoints {
  constructor(
    private readonly db: Db,
    private readonly policy: AddressPolicy,
  ) {}

  /** The address policy deliveries follow (one for the process). */
  policyOf(): AddressPolicy {
    return this.policy;
  }

  /** Tells the sender something is due now (set where the sender runs in this process). */
  poke: () => void = () => {};

  private owner(principal: Principal): { ownerId: string; ownerRole: 'installer' | 'distributor' } {
    if (principal.role === 'property-manager') throw forbidden('webhooks are the installer\'s');
    return { ownerId: principal.accountId, ownerRole: principal.role };
  }

  /** A URL naming a refused address literally is refused at once; names are checked on every connect. */
  private checkUrl(url: string): void {
    const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
    if (host === 'localhost' || host.endsWith('.localhost') || (isIP(host) && !this.policy.allows(host))) throw badRequest('url_not_allowed', `webhooks do not go to ${host}: a loopback, link-local or private address (WEBHOOK_ALLOWED_NETWORKS allows networks)`, { url });
  }

  private async find(principal: Principal, id: string): Promise<EndpointRow> {
    const { ownerId } = this.owner(principal);
    const [row] = await this.db.select().from(webhookEndpoints).where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.ownerId, ownerId)));
    if (!row) throw notFound('webhook endpoint', { id });
    return row;
  }

  async create(principal: Principal, input: CreateEndpointInput): Promise<EndpointView & { secret: string }> {
    const owner = this.owner(principal);
    this.checkUrl(input.url);
    const secret = newSecret();
    const row = await this.db.transaction(async (tx) => {
      // Endpoints per owner are few: each event fans out to every one of them.
      const [held] = await tx.select({ n: count() }).from(webhookEndpoints).where(eq(webhookEndpoints.ownerId, owner.ownerId));
      if ((held?.n ?? 0) >= MAX_ENDPOINTS) throw conflict('too_many_endpoints', `at most ${MAX_ENDPOINTS} webhook endpoints per account; remove one first`, { max: MAX_ENDPOINTS });
      const [row] = await tx.insert(webhookEndpoints).values({ ...owner, ...input, secret }).returning();
      await recordWrite(tx, principal, { installerId: principal.accountId, action: 'webhook.created', subject: row!.id, details: { url: input.url, eventTypes: input.eventTypes } });
      return row!;
    });
    return { ...endpointView(row), secret };
  }

  async list(principal: Principal): Promise<EndpointView[]> {
    const { ownerId } = this.owner(principal);
    return (await this.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.ownerId, ownerId)).orderBy(webhookEndpoints.createdAt)).map(endpointView);
  }

  async get(principal: Principal, id: string): Promise<EndpointView> {
    return endpointView(await this.find(principal, id));
  }

  async update(principal: Principal, id: string, patch: PatchEndpointInput): Promise<EndpointView> {
    await this.find(principal, id);
    if (patch.url) this.checkUrl(patch.url);
    const row = await this.db.transaction(async (tx) => {
      // Enabling again clears the cloud's reason for disabling.
      const [row] = await tx.update(webhookEndpoints).set({ ...patch, ...(patch.enabled ? { disabledReason: null } : {}), updatedAt: new Date() }).where(eq(webhookEndpoints.id, id)).returning();
      if (patch.enabled === false) await parkDeliveries(tx, [id]);
      if (patch.enabled === true) await resumeDeliveries(tx, id);
      await recordWrite(tx, principal, { installerId: principal.accountId, action: 'webhook.updated', subject: id, details: patch });
      return row!;
    });
    this.poke();
    return endpointView(row);
  }

  async remove(principal: Principal, id: string): Promise<void> {
    await this.find(principal, id);
    await this.db.transaction(async (tx) => {
      await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.id, id));
      await recordWrite(tx, principal, { installerId: principal.accountId, action: 'webhook.removed', subject: id, details: null });
    });
  }

  /** A new secret; the old one keeps signing (a second signature) for `overlapSeconds`. */
  async rotate(principal: Principal, id: string, overlapSeconds: number): Promise<EndpointView & { secret: string }> {
    const old = await this.find(principal, id);
    const secret = newSecret();
    const row = await this.db.transaction(async (tx) => {
      const [row] = await tx
        .update(webhookEndpoints)
        .set({ secret, previousSecret: overlapSeconds > 0 ? old.secret : null, previousSecretUntil: overlapSeconds > 0 ? new Date(Date.now() + overlapSeconds * 1000) : null, updatedAt: new Date() })
        .where(eq(webhookEndpoints.id, id))
        .returning();
      await recordWrite(tx, principal, { installerId: principal.accountId, action: 'webhook.secret-rotated', subject: id, details: { overlapSeconds } });
      return row!;
    });
    return { ...endpointView(row), secret };
  }

  /** A `webhook.test` event for this endpoint alone. */
  async test(principal: Principal, id: string): Promise<void> {
    const e = await this.find(principal, id);
    await emitEvents(this.db, [{ type: 'webhook.test', installerId: e.ownerRole === 'installer' ? e.ownerId : null, endpointId: id, data: { endpointId: id, message: 'a test event' } }]);
    this.poke();
  }

  async deliveries(principal: Principal, id: string, q: { state?: DeliveryView['state'] | undefined; page: number; pageSize: number }): Promise<Page<DeliveryView>> {
    await this.find(principal, id);
    const where = and(eq(webhookDeliveries.endpointId, id), q.state ? eq(webhookDeliveries.state, q.state) : undefined);
    return paginate(
      this.db
        .select({ d: webhookDeliveries, eventId: outboundEvents.eventId, type: outboundEvents.type })
        .from(webhookDeliveries)
        .innerJoin(outboundEvents, eq(outboundEvents.id, webhookDeliveries.eventRow))
        .where(where)
        .orderBy(desc(webhookDeliveries.id))
        .limit(q.pageSize)
        .offset((q.page - 1) * q.pageSize),
      this.db.select({ n: count() }).from(webhookDeliveries).where(where),
      (r) => deliveryView(r.d, r.eventId, r.type),
      q.page,
      q.pageSize,
    );
  }

  async delivery(principal: Principal, id: string, deliveryId: number) {
    await this.find(principal, id);
    const [r] = await this.db.select({ d: webhookDeliveries, e: outboundEvents }).from(webhookDeliveries).innerJoin(outboundEvents, eq(outboundEvents.id, webhookDeliveries.eventRow)).where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.endpointId, id)));
    if (!r) throw notFound('delivery', { deliveryId });
    const log = await this.db.select().from(webhookAttempts).where(eq(webhookAttempts.deliveryId, deliveryId)).orderBy(webhookAttempts.id);
    return {
      ...deliveryView(r.d, r.e.eventId, r.e.type),
      event: { type: r.e.type, timestamp: r.e.at.toISOString(), data: r.e.data },
      log: log.map((a) => ({ at: a.at.toISOString(), status: a.status, latencyMs: a.latencyMs, error: a.error, response: a.response })),
    };
  }

  /** Sends deliveries again now, under their webhook-id, with a new retry window: one, or all since a time. */
  async replay(principal: Principal, id: string, which: { deliveryId: number } | { since: Date }): Promise<{ replayed: number }> {
    await this.find(principal, id);
    const rows = await this.db
      .update(webhookDeliveries)
      .set({ state: 'pending', nextAttemptAt: sql`now()`, createdAt: sql`now()` })
      .where(
        and(
          eq(webhookDeliveries.endpointId, id),
          'deliveryId' in which
            ? eq(webhookDeliveries.id, which.deliveryId)
            : inArray(webhookDeliveries.eventRow, this.db.select({ id: outboundEvents.id }).from(outboundEvents).where(gte(outboundEvents.at, which.since))),
        ),
      )
      .returning({ id: webhookDeliveries.id });
    if ('deliveryId' in which && !rows.length) throw notFound('delivery', { deliveryId: which.deliveryId });
    this.poke();
    return { replayed: rows.length };
  }
}

function deliveryView(d: typeof webhookDeliveries.$inferSelect, eventId: string, type: string): DeliveryView {
  return {
    id: d.id,
    eventId,
    type,
    state: d.state,
    attempts: d.attempts,
    nextAttemptAt: d.state === 'pending' ? d.nextAttemptAt.toISOString() : null,
    createdAt: d.createdAt.toISOString(),
    lastAttemptAt: iso(d.lastAttemptAt),
    lastStatus: d.lastStatus,
    lastLatencyMs: d.lastLatencyMs,
    lastError: d.lastError,
    lastResponse: d.lastResponse,
  };
}
