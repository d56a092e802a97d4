import pg from 'pg';
import type { Database, Tx } from '../db/client.js';
import { runIn, type Statement } from '../db/client.js';
import type { Logger } from '../logger.js';
import type { JobError, JobEventType, JobState } from './tables.js';

/** One job transition, as the lifecycle outbox (job_events) carries it to its sinks. */
export interface JobEvent {
  /** The event's id: a sink that keeps what it took outside PostgreSQL deduplicates by it. */
  id: number;
  jobId: string;
  mac: string;
  kind: string;
  batchId: string | null;
  type: JobEventType;
  fromState: JobState | null;
  toState: JobState;
  stage: string | null;
  progress: number;
  attempts: number;
  error: JobError | null;
  result: unknown;
  actor: string;
  at: Date;
  /** When the job was last delivered (a finish on the device's answer measures from it). */
  deliveredAt: Date | null;
}

/**
 * A consumer of the outbox. It gets each event once in order, in batches; what it writes through `tx`
 * commits together with its progress (exactly once), anything else it does is at least once (a crash
 * between its work and that commit hands the events again): it deduplicates by event id.
 */
export interface JobEventSink {
  readonly name: string;
  handle(events: JobEvent[], tx: Tx): Promise<void>;
}

export interface JobEventFollowerOptions {
  database: Database;
  log: Logger;
  /** In a cluster only the engine process holding the follower's lease follows. */
  mayRun?: () => Promise<boolean>;
  /** PostgreSQL's URL for a LISTEN connection (wakes the follower when events commit); none: it polls. */
  listenUrl?: string | null;
  /** The longest a committed event waits for its sinks when no wake-up comes. */
  pollMs?: number;
  batchSize?: number;
  /** Jitter's randomness (tests). */
  random?: () => number;
}

interface Position {
  tx: string;
  id: number;
}

const after = (a: Position, b: Position) => {
  const ta = BigInt(a.tx);
  const tb = BigInt(b.tx);
  return ta > tb || (ta === tb && a.id > b.id);
};

const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 30_000;

// Events are read in (tx, id) order and only from transactions older than every transaction still running
// (the snapshot's xmin): an event that commits later belongs to a transaction at or above that xmin, so it
// always sorts after everything already read and a per-sink cursor (tx, id) never skips one. A serial id
// alone would: ids are taken at insert, transactions commit in another order.
const st = {
  read: {
    name: 'job_events_read',
    text: `SELECT id, tx::text AS tx, job_id, mac, kind, batch_id, type, from_state, to_state, stage, progress, attempts, error, result, actor, at, delivered_at
      FROM job_events WHERE tx < pg_snapshot_xmin(pg_current_snapshot()) AND (tx, id) > ($1::xid8, $2::bigint)
      ORDER BY tx, id LIMIT $3`,
  },
  cursors: { name: 'job_event_cursors_of', text: 'SELECT sink, last_tx::text AS last_tx, last_id FROM job_event_cursors WHERE sink = ANY($1::text[])' },
  register: { name: 'job_event_cursors_register', text: 'INSERT INTO job_event_cursors (sink) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING' },
  // Rows every sink took go: up to the lowest cursor of the sinks followed.
  remove: {
    name: 'job_events_remove',
    text: `DELETE FROM job_events e USING (SELECT last_tx, last_id FROM job_event_cursors WHERE sink = ANY($1::text[]) ORDER BY last_tx, last_id LIMIT 1) m
      WHERE (e.tx, e.id) <= (m.last_tx, m.last_id)`,
  },
} satisfies Record<string, Statement>;

const lockCursor: Statement = { name: 'job_event_cursor_lock', text: 'SELECT last_tx::text AS last_tx, last_id FROM job_event_cursors WHERE sink = $1 FOR UPDATE' };
const moveCursor: Statement = { name: 'job_event_cursor_move', text: 'UPDATE job_event_cursors SET last_tx = $2::xid8, last_id = $3::bigint, updated_at = now() WHERE sink = $1' };

type RawEvent = Record<string, unknown>;
const toDate = (v: unknown): Date => (v instanceof Date ? v : new Date(v as string));

function eventFromRow(r: RawEvent): JobEvent & { position: Position } {
  return {
    id: Number(r.id),
    position: { tx: r.tx as string, id: Number(r.id) },
    jobId: r.job_id as string,
    mac: r.mac as string,
    kind: r.kind as string,
    batchId: (r.batch_id as string | null) ?? null,
    type: r.type as JobEventType,
    fromState: (r.from_state as JobState | null) ?? null,
    toState: r.to_state as JobState,
    stage: (r.stage as string | null) ?? null,
    progress: r.progress as number,
    attempts: r.attempts as number,
    error: (r.error as JobError | null) ?? null,
    result: r.result ?? null,
    actor: r.actor as string,
    at: toDate(r.at),
    deliveredAt: r.delivered_at == null ? null : toDate(r.delivered_at),
  };
}

/**
 * Follows the lifecycle outbox: hands its events in order to every sink, records each sink's progress
 * (its cursor) in the transaction of the sink's own writes, and removes the events every sink took. Woken
 * by NOTIFY (the outbox's trigger) and by `poke`, polling besides; every failure, of a sink or of the
 * database, is logged and tried again with backoff and jitter, never thrown out of the loop.
 */
export class JobEventFollower {
  private readonly sinks = new Map<string, JobEventSink>();
  private registered = false;
  /** Each sink's cursor as this follower last read or moved it; read again after any doubt. */
  private cursors: Map<string, Position> | null = null;
  private closed = false;
  private loop: Promise<void> | null = null;
  private listening: Promise<void> | null = null;
  private listener: pg.Client | null = null;
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private stopped!: () => void;
  private readonly stopping = new Promise<void>((resolve) => (this.stopped = resolve));
  private readonly pollMs: number;
  private readonly batchSize: number;

  constructor(private readonly opts: JobEventFollowerOptions) {
    this.pollMs = opts.pollMs ?? 1000;
    this.batchSize = opts.batchSize ?? 500;
  }

  /** Adds a sink; one new to this deployment starts at the oldest event still in the outbox. */
  register(sink: JobEventSink): void {
    if (this.sinks.has(sink.name)) throw new Error(`job event sink ${sink.name} is registered twice`);
    this.sinks.set(sink.name, sink);
    this.registered = false;
    this.cursors = null;
    this.poke();
  }

  unregister(name: string): void {
    this.sinks.delete(name);
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
    if (this.opts.listenUrl) this.listening = this.listen(this.opts.listenUrl);
  }

  async stop(): Promise<void> {
    this.closed = true;
    this.stopped();
    this.poke();
    await this.listener?.end().catch(() => {});
    await Promise.all([this.loop, this.listening]);
  }

  /** Events were written: follow them soon. */
  poke = (): void => {
    this.woken = true;
    this.wakeUp?.();
  };

  private sleep(ms: number): Promise<void> {
    if (this.woken || this.closed) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeUp = null;
        self.woken = false;
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private backoff(failures: number): number {
    const ms = Math.min(RETRY_BASE_MS * 2 ** Math.min(failures - 1, 20), RETRY_MAX_MS);
    return ms / 2 + (ms / 2) * (this.opts.random ?? Math.random)();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      let more = false;
      try {
        if (!this.opts.mayRun || (await this.opts.mayRun())) more = await this.pass();
        failures = 0;
      } catch (err) {
        failures++;
        this.opts.log.warn({ err: (err as Error).message, failures }, 'following the job event outbox failed; trying again');
        // A wake-up must not cut the backoff short: a database that is away is not asked again at once.
        this.woken = false;
        await this.sleep(this.backoff(failures));
        continue;
      }
      if (!more) await this.sleep(this.pollMs);
    }
  }

  /** One batch to every sink; true when the outbox may hold more already. */
  async pass(): Promise<boolean> {
    const names = [...this.sinks.keys()];
    if (!names.length) return false;
    const { database } = this.opts;
    if (!this.registered) {
      await database.run(st.register, [names]);
      this.registered = true;
    }
    const cursors = (this.cursors ??= new Map(
      (await database.run<{ sink: string; last_tx: string; last_id: string | number }>(st.cursors, [names])).map((c) => [c.sink, { tx: c.last_tx, id: Number(c.last_id) }]),
    ));
    let from: Position | null = null;
    for (const name of names) {
      const c = cursors.get(name);
      if (!c) {
        this.registered = false; // its row went: register again next pass
        this.cursors = null;
        return true;
      }
      if (!from || after(from, c)) from = c;
    }
    const events = (await database.run<RawEvent>(st.read, [from!.tx, from!.id, this.batchSize])).map(eventFromRow);
    if (!events.length) return false;
    let failed: unknown = null;
    for (const name of names) {
      const sink = this.sinks.get(name);
      if (!sink) continue;
      const cursor = cursors.get(name)!;
      const mine = events.filter((e) => after(e.position, cursor));
      if (!mine.length) continue;
      try {
        if (await this.deliver(sink, cursor, mine)) cursors.set(name, mine[mine.length - 1]!.position);
        else this.cursors = null; // moved by another follower: read again
      } catch (err) {
        this.cursors = null;
        failed ??= err;
        this.opts.log.warn({ sink: name, err: (err as Error).message, events: mine.length }, 'a job event sink failed; its events are handed again');
      }
    }
    await database.run(st.remove, [names]);
    if (failed) throw failed;
    return events.length === this.batchSize;
  }

  /** Hands events to one sink and moves its cursor in one transaction; false when the cursor was elsewhere. */
  private async deliver(sink: JobEventSink, cursor: Position, events: (JobEvent & { position: Position })[]): Promise<boolean> {
    return this.opts.database.db.transaction(async (tx) => {
      // Another follower (a lease that lapsed) may have moved this cursor: then these events are taken.
      const [now] = await runIn<{ last_tx: string; last_id: string | number }>(tx, lockCursor, [sink.name]);
      if (!now || now.last_tx !== cursor.tx || Number(now.last_id) !== cursor.id) return false;
      await sink.handle(
        events.map(({ position: _p, ...e }) => e),
        tx,
      );
      const last = events[events.length - 1]!.position;
      await runIn(tx, moveCursor, [sink.name, last.tx, last.id]);
      return true;
    });
  }

  /** Keeps a LISTEN connection while running, reconnecting with backoff; its errors never escape. */
  private async listen(url: string): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      const client = new pg.Client({ connectionString: url });
      this.listener = client;
      const ended = new Promise<void>((resolve) => {
        client.on('error', (err) => {
          this.opts.log.warn({ err: err.message }, 'the job event outbox listener lost PostgreSQL');
          resolve();
        });
        client.on('end', () => resolve());
      });
      client.on('notification', () => this.poke());
      try {
        await client.connect();
        await client.query('LISTEN job_events');
        failures = 0;
        this.poke(); // what committed while not listening
        await Promise.race([ended, this.stopping]);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'the job event outbox listener could not connect');
      } finally {
        await client.end().catch(() => {});
      }
      if (this.closed) break;
      failures++;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, this.backoff(failures)))), this.stopping]);
      clearTimeout(timer);
    }
  }
}
