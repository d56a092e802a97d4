import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { eq, inArray, sql } from 'drizzle-orm';
import type { Database, Queryable, Tx } from '../db/client.js';
import { runIn } from '../db/client.js';
import { Nap } from '../shared/nap.js';
import { OutboxReader, type OutboxRow } from '../events/outbox.js';
import { outboundEvents } from '../events/tables.js';
import type { Logger } from '../logger.js';
import type { AddressPolicy } from './ssrf.js';
import { signedHeaders } from './signing.js';
import { webhookAttempts, webhookDeliveries, webhookEndpoints } from './tables.js';

// Webhook delivery (issue 19): outbound events fan out to the endpoints subscribed to them (a delivery row
// each, in the dispatcher's transaction with its cursor), and a sender posts them, signed, retrying with
// backoff for about three days. A delivery is claimed for one attempt's time: a process killed mid-attempt
// leaves it to be sent again, under the same webhook-id, once that time is over.

export interface WebhookDeliveryOptions {
  database: Database;
  log: Logger;
  policy: AddressPolicy;
  timeoutMs: number;
  /** The first retry's delay; each next one doubles it, up to an hour (jittered ±20 %). */
  retryBaseMs: number;
  /** How long a delivery is retried, from its event (about three days). */
  retryMs: number;
  concurrency: number;
  /** Attempts in flight per endpoint at most. */
  endpointConcurrency: number;
  mayRun?: () => Promise<boolean>;
  /** Events are kept this long (the stream's window); deliveries go with them. */
  retentionMs: number;
}

/** At most this much of an answer is read; the first part is kept in the delivery log. */
const MAX_RESPONSE_BYTES = 64 * 1024;
const EXCERPT_BYTES = 1024;

interface Outcome extends Attempt {
  id: number;
  endpointId: string;
  at: Date;
  state: 'pending' | 'succeeded' | 'failed';
  delayMs: number;
  gone: boolean;
}

interface Attempt {
  status: number | null;
  latencyMs: number;
  error: string | null;
  response: string | null;
  retryAfterMs: number | null;
}

/** A disabled endpoint's deliveries leave the due order until it is enabled again (`resumeDeliveries`). */
export async function parkDeliveries(q: Queryable, endpointIds: string[]): Promise<void> {
  await q.execute(sql`UPDATE webhook_deliveries SET next_attempt_at = 'infinity' WHERE state = 'pending' AND endpoint_id = ANY(${sql.param(endpointIds)}::uuid[])`);
}

export async function resumeDeliveries(q: Queryable, endpointId: string): Promise<void> {
  await q.execute(sql`UPDATE webhook_deliveries SET next_attempt_at = now(), claimed_until = NULL WHERE state = 'pending' AND endpoint_id = ${endpointId} AND next_attempt_at = 'infinity'`);
}

export const backoffMs = (attempts: number, baseMs: number, random = Math.random) => Math.min(3600_000, baseMs * 2 ** Math.max(0, attempts - 1)) * (0.8 + 0.4 * random());

/** Retry-After as seconds or an HTTP date, at most a day. */
function retryAfter(value: string | undefined, now: number): number | null {
  if (!value) return null;
  const ms = /^[0-9]+$/.test(value.trim()) ? Number(value) * 1000 : Date.parse(value) - now;
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 24 * 3600_000) : null;
}

export class WebhookDelivery {
  readonly dispatcher: OutboxReader;
  private readonly agents = { http: new http.Agent({ keepAlive: true, maxSockets: 256 }), https: new https.Agent({ keepAlive: true, maxSockets: 256 }) };
  private inFlight = 0;
  private closed = false;
  private loop: Promise<void> | null = null;
  private readonly nap = new Nap();
  private lastSweep = 0;
  private outcomes: { o: Outcome; done: () => void }[] = [];
  private flushing: Promise<void> | null = null;

  constructor(private readonly opts: WebhookDeliveryOptions) {
    this.dispatcher = new OutboxReader({
      database: opts.database,
      log: opts.log,
      table: 'outbound_events',
      name: 'webhooks',
      handle: (rows, tx) => this.fanOut(rows, tx),
      ...(opts.mayRun ? { mayRun: opts.mayRun } : {}),
      pollMs: 50,
    });
  }

  start(): void {
    this.dispatcher.start();
    this.loop ??= this.run();
  }

  /** Something is due now (a replay, a new event). */
  poke = (): void => {
    this.dispatcher.poke();
    this.nap.wake();
  };

  async stop(): Promise<void> {
    this.closed = true;
    this.nap.wake();
    await Promise.all([this.dispatcher.stop(), this.loop]);
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  /** One delivery per endpoint subscribed to each event, in the dispatcher's transaction. */
  private async fanOut(rows: OutboxRow[], tx: Tx): Promise<void> {
    const endpoints = await tx.select({ id: webhookEndpoints.id, ownerId: webhookEndpoints.ownerId, ownerRole: webhookEndpoints.ownerRole, types: webhookEndpoints.eventTypes }).from(webhookEndpoints).where(eq(webhookEndpoints.enabled, true));
    if (!endpoints.length) return;
    const values: (typeof webhookDeliveries.$inferInsert)[] = [];
    for (const r of rows) {
      const type = r.type as string;
      for (const e of endpoints) {
        if (r.endpoint_id ? r.endpoint_id !== e.id : e.ownerRole !== 'distributor' && r.installer_id !== e.ownerId) continue;
        if (!r.endpoint_id && e.types.length && !e.types.includes(type)) continue;
        values.push({ endpointId: e.id, eventRow: r.id, orderKey: (r.mac as string | null) ?? (r.site_id as string | null) ?? `event:${r.id}` });
      }
    }
    for (let i = 0; i < values.length; i += 1000) await tx.insert(webhookDeliveries).values(values.slice(i, i + 1000));
    if (values.length) setImmediate(() => this.nap.wake());
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let claimed = 0;
      try {
        if (!this.opts.mayRun || (await this.opts.mayRun())) {
          claimed = await this.sendDue();
          await this.sweep();
        }
        failures = 0;
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 20 === 0) this.opts.log.warn({ err: (err as Error).message }, 'webhook sender failed; it tries again');
      }
      if (!claimed) await this.nap.sleep(failures ? Math.min(30_000, 200 * 2 ** Math.min(failures, 8)) : 100);
    }
  }


  /**
   * Claims what is due, up to the free concurrency, and sends it. One device's deliveries to an endpoint go
   * one at a time, the earliest due first (so first attempts keep event order); one waiting for its retry
   * holds nothing back. A disabled endpoint's deliveries wait.
   */
  async sendDue(): Promise<number> {
    const room = this.opts.concurrency - this.inFlight;
    if (room <= 0) return 0;
    const claimed = await this.opts.database.run<{ id: string | number; endpoint_id: string; event_row: string | number; attempts: number; created_at: Date | string }>(
      {
        name: 'webhook_claim',
        // Due deliveries in order, none of a device whose delivery is in flight, the first of each device.
        text: `WITH inflight AS (
          SELECT endpoint_id, order_key FROM webhook_deliveries WHERE claimed_until IS NOT NULL AND claimed_until > now()
        ), busy AS (
          SELECT endpoint_id, count(*) AS n FROM inflight GROUP BY endpoint_id
        ), candidates AS (
          SELECT d.id, d.endpoint_id, d.order_key, d.next_attempt_at FROM webhook_deliveries d
          WHERE d.state = 'pending' AND d.next_attempt_at <= now()
            AND NOT EXISTS (SELECT 1 FROM inflight i WHERE i.endpoint_id = d.endpoint_id AND i.order_key = d.order_key)
          ORDER BY d.next_attempt_at, d.id LIMIT $1 * 8
        ), heads AS (
          SELECT DISTINCT ON (endpoint_id, order_key) id, endpoint_id, next_attempt_at FROM candidates ORDER BY endpoint_id, order_key, next_attempt_at, id
        ), ranked AS (
          SELECT h.id, row_number() OVER (PARTITION BY h.endpoint_id ORDER BY h.next_attempt_at, h.id) + coalesce(b.n, 0) AS n
          FROM heads h JOIN webhook_endpoints w ON w.id = h.endpoint_id AND w.enabled LEFT JOIN busy b ON b.endpoint_id = h.endpoint_id
        ), due AS (
          -- At most $3 attempts in flight per endpoint: a receiver that never answers holds its own slots only.
          SELECT d.id FROM webhook_deliveries d JOIN ranked h ON h.id = d.id WHERE h.n <= $3
          ORDER BY d.next_attempt_at, d.id LIMIT $1 FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE webhook_deliveries d SET claimed_until = now() + make_interval(secs => $2::double precision / 1000), next_attempt_at = now() + make_interval(secs => $2::double precision / 1000), attempts = d.attempts + 1
        FROM due WHERE d.id = due.id
        RETURNING d.id, d.endpoint_id, d.event_row, d.attempts, d.created_at`,
      },
      [room, this.opts.timeoutMs + 5000, this.opts.endpointConcurrency],
    );
    if (!claimed.length) return 0;
    const db = this.opts.database.db;
    const [events, endpoints] = await Promise.all([
      db.select().from(outboundEvents).where(inArray(outboundEvents.id, claimed.map((c) => Number(c.event_row)))),
      db.select().from(webhookEndpoints).where(inArray(webhookEndpoints.id, [...new Set(claimed.map((c) => c.endpoint_id))])),
    ]);
    const eventOf = new Map(events.map((e) => [e.id, e]));
    const endpointOf = new Map(endpoints.map((e) => [e.id, e]));
    for (const c of claimed) {
      const event = eventOf.get(Number(c.event_row));
      const endpoint = endpointOf.get(c.endpoint_id);
      if (!event || !endpoint) continue;
      this.inFlight++;
      void this.attempt({ id: Number(c.id), attempts: c.attempts, createdAt: new Date(c.created_at) }, event, endpoint).finally(() => {
        this.inFlight--;
        // Claims go in groups: the loop claims again once a quarter of the room is free.
        if (this.opts.concurrency - this.inFlight >= Math.max(1, this.opts.concurrency / 4)) this.nap.wake();
      });
    }
    return claimed.length;
  }

  private async attempt(d: { id: number; attempts: number; createdAt: Date }, event: typeof outboundEvents.$inferSelect, endpoint: typeof webhookEndpoints.$inferSelect): Promise<void> {
    const body = JSON.stringify({ type: event.type, timestamp: event.at.toISOString(), data: event.data });
    const now = new Date();
    const secrets = [endpoint.secret, ...(endpoint.previousSecret && endpoint.previousSecretUntil && endpoint.previousSecretUntil > now ? [endpoint.previousSecret] : [])];
    const result = await this.post(endpoint.url, { ...signedHeaders(secrets, event.eventId, body, now), 'content-type': 'application/json', 'user-agent': 'intercom-device-cloud-webhooks/1' }, body);
    const ok = result.status !== null && result.status >= 200 && result.status < 300;
    const gone = result.status === 410;
    const expired = Date.now() - d.createdAt.getTime() >= this.opts.retryMs;
    const state: Outcome['state'] = ok ? 'succeeded' : gone || expired ? 'failed' : 'pending';
    const delayMs = state === 'pending' ? Math.max(backoffMs(d.attempts, this.opts.retryBaseMs), result.retryAfterMs ?? 0) : 0;
    await this.record({ id: d.id, endpointId: endpoint.id, at: now, state, delayMs, gone, ...result });
  }

  /** Outcomes are written in groups (two statements for many attempts); a delivery unrecorded is sent again. */
  private record(o: Outcome): Promise<void> {
    return new Promise((resolve) => {
      this.outcomes.push({ o, done: resolve });
      this.flushing ??= new Promise<void>((go) => setTimeout(go, 5)).then(() => this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.outcomes.splice(0);
    this.flushing = null;
    if (!batch.length) return;
    const o = batch.map((b) => b.o);
    try {
      await this.opts.database.db.transaction(async (tx) => {
        const col = <T>(f: (x: Outcome) => T) => sql.param(o.map(f));
        await tx.execute(sql`
          UPDATE webhook_deliveries d SET state = u.state, claimed_until = NULL,
            next_attempt_at = now() + make_interval(secs => u.delay_ms / 1000), last_attempt_at = u.at, last_status = u.status,
            last_latency_ms = u.latency_ms, last_error = u.error, last_response = u.response
          FROM unnest(${col((x) => x.id)}::bigint[], ${col((x) => x.state)}::text[], ${col((x) => x.delayMs)}::double precision[], ${col((x) => x.at.toISOString())}::timestamptz[],
            ${col((x) => x.status)}::int[], ${col((x) => x.latencyMs)}::int[], ${col((x) => x.error)}::text[], ${col((x) => x.response)}::text[])
            AS u(id, state, delay_ms, at, status, latency_ms, error, response)
          WHERE d.id = u.id AND d.state = 'pending'`);
        await tx.insert(webhookAttempts).values(o.map((x) => ({ deliveryId: x.id, at: x.at, status: x.status, latencyMs: x.latencyMs, error: x.error, response: x.response })));
        // 410 Gone: the receiver is no more; the endpoint stops until its owner enables it again.
        const gone = [...new Set(o.filter((x) => x.gone).map((x) => x.endpointId))];
        if (gone.length) {
          await tx.update(webhookEndpoints).set({ enabled: false, disabledReason: 'the receiver answered 410 Gone', updatedAt: new Date() }).where(inArray(webhookEndpoints.id, gone));
          await parkDeliveries(tx, gone);
        }
      });
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message, deliveries: o.length }, 'webhook outcomes could not be recorded; those deliveries are sent again');
    }
    for (const b of batch) b.done();
  }

  /** One POST: no redirects followed, the address checked on connect, the answer read up to 64 KiB. */
  private post(url: string, headers: Record<string, string>, body: string): Promise<Attempt> {
    const started = performance.now();
    const done = (a: Omit<Attempt, 'latencyMs'>): Attempt => ({ ...a, latencyMs: Math.round(performance.now() - started) });
    return new Promise((resolve) => {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        return resolve(done({ status: null, error: 'invalid URL', response: null, retryAfterMs: null }));
      }
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (isIP(host) && !this.opts.policy.allows(host)) return resolve(done({ status: null, error: `address ${host} is not allowed`, response: null, retryAfterMs: null }));
      const secure = u.protocol === 'https:';
      const req = (secure ? https : http).request(u, {
        method: 'POST',
        headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        agent: secure ? this.agents.https : this.agents.http,
        lookup: this.opts.policy.lookup as never,
        timeout: this.opts.timeoutMs,
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        resolve(done({ status: null, error: err.message.slice(0, 300), response: null, retryAfterMs: null }));
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const finish = () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).subarray(0, EXCERPT_BYTES).toString('utf8');
          resolve(done({ status: res.statusCode ?? null, error: null, response: text || null, retryAfterMs: retryAfter(res.headers['retry-after'], Date.now()) }));
        };
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size <= EXCERPT_BYTES) chunks.push(chunk);
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy();
            finish();
          }
        });
        res.on('end', finish);
        res.on('error', finish);
      });
      req.end(body);
    });
  }

  /** Events past the window go, and their deliveries with them (every ten minutes). */
  private async sweep(): Promise<void> {
    if (Date.now() - this.lastSweep < 600_000) return;
    this.lastSweep = Date.now();
    await runIn(this.opts.database.db, { name: 'outbound_events_sweep', text: `DELETE FROM outbound_events WHERE at < now() - make_interval(secs => $1::double precision / 1000)` }, [this.opts.retentionMs]);
  }
}
