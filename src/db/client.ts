import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql, type SQL } from 'drizzle-orm';
import { drizzle as drizzlePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { backoffDelay } from '../infra/backoff.js';
import * as schema from './schema.js';
import { isUnreachable } from './errors.js';
import { deployment } from './tables.js';

export type Db = NodePgDatabase<typeof schema>;
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
/** Either the database or an open transaction: queries that must join a caller's transaction take this. */
export type Queryable = Db | Tx;

/** A statement written as SQL text with $1… placeholders, named so PostgreSQL plans it once per connection. */
export interface Statement {
  name: string;
  text: string;
}

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  /** Runs a named statement outside any transaction (prepared once per connection on PostgreSQL). */
  run<T = Record<string, unknown>>(statement: Statement, values: unknown[]): Promise<T[]>;
  ping(): Promise<void>;
  /**
   * Runs `work` while holding the deployment's start-up lock (a PostgreSQL advisory lock): processes
   * starting together migrate and bootstrap one after the other, never at once.
   */
  exclusively<T>(work: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The advisory lock key of migrations and the first-start bootstrap ("ic-start"). */
const STARTUP_LOCK = 0x69632d73;

/** The same statement inside a caller's transaction (drizzle), unprepared. */
export async function runIn<T = Record<string, unknown>>(q: Queryable, statement: Statement, values: unknown[]): Promise<T[]> {
  const parts = statement.text.split(/\$(\d+)/);
  const chunks: SQL[] = [];
  // An array is one parameter (as `Database.run` passes it), not a list drizzle would spread into `$1, $2, …`.
  const value = (v: unknown) => (Array.isArray(v) ? sql`${sql.param(v)}` : sql`${v}`);
  parts.forEach((part, i) => chunks.push(i % 2 === 0 ? sql.raw(part) : value(values[Number(part) - 1])));
  const result = (await q.execute(sql.join(chunks))) as unknown as { rows: T[] };
  return result.rows;
}

/** Finds migrations/ whether running from src/ (tsx) or from dist/src/ (built). */
export function migrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'migrations');
    if (existsSync(join(candidate, 'meta', '_journal.json'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error('migrations/ folder not found');
}

/** How PostgreSQL connections fail fast and come back (see `GuardedPool`). */
export interface ConnectionPolicy {
  /** Longest wait for a connection (a new one, or a free one of the pool) before the call fails. */
  connectTimeoutMs: number;
  /** Longest wait for a query's answer on a connection that went silent. */
  queryTimeoutMs: number;
}

/** Defaults when a caller gives none (the launcher's short-lived pool); processes take them from config. */
const defaultPolicy: ConnectionPolicy = { connectTimeoutMs: 750, queryTimeoutMs: 30_000 };

export async function openDatabase(opts: {
  url: string | undefined;
  dataDir: string;
  poolSize?: number;
  policy?: ConnectionPolicy;
  /** A pooled connection, idle or checked out (transaction, advisory lock), was lost. */
  onConnectionError?: (err: Error) => void;
  /** The database stopped answering (`delayMs` until the next attempt), or answers again (null). */
  onReachability?: (state: { reachable: boolean; delayMs: number | null; err?: string }) => void;
  /** Longest wait in `close()` for checked-out connections to come back before they are destroyed. */
  closeGraceMs?: number;
  /** `close()` gave up waiting: `checkedOut` connections were still in use and were destroyed. */
  onCloseOverdue?: (state: { checkedOut: number; graceMs: number }) => void;
}): Promise<Database> {
  if (opts.url) {
    const policy = opts.policy ?? defaultPolicy;
    const pool = new GuardedPool(
      {
        connectionString: opts.url,
        max: opts.poolSize ?? 10,
        connectionTimeoutMillis: policy.connectTimeoutMs,
        query_timeout: policy.queryTimeoutMs,
        // A peer that vanished without a reset (a partition) is noticed by the kernel, not by waiting.
        keepAlive: true,
      },
      opts.onReachability ?? (() => {}),
    );
    const lost = (err: Error) => opts.onConnectionError?.(err);
    // An idle connection dropped by the server (restart, failover) must not bring the service down.
    pool.on('error', lost);
    // Nor one checked out: node-postgres emits `error` on the client itself, which has no listener then.
    pool.on('connect', (client) => client.on('error', lost));
    const open = new Set<pg.PoolClient>();
    pool.on('connect', (client) => open.add(client));
    pool.on('remove', (client) => open.delete(client));
    const db = drizzlePg({ client: pool, schema });
    db.transaction = transactionsGivingBack(pool);
    return {
      db,
      kind: 'postgres',
      run: async <T,>(st: Statement, values: unknown[]) => (await pool.query({ name: st.name, text: st.text, values })).rows as T[],
      ping: async () => {
        await db.execute(sql`select 1`);
      },
      exclusively: async <T,>(work: () => Promise<T>) => {
        const client = await pool.connect();
        let failure: unknown;
        try {
          await client.query('SELECT pg_advisory_lock($1)', [STARTUP_LOCK]);
          try {
            return await work();
          } finally {
            await client.query('SELECT pg_advisory_unlock($1)', [STARTUP_LOCK]).catch((err: unknown) => {
              failure = err;
              throw err;
            });
          }
        } catch (err) {
          failure ??= err;
          throw err;
        } finally {
          // A connection whose lock or unlock went unanswered may still hold the lock: it is closed, not pooled.
          client.release(isUnreachable(failure) ? (failure as Error) : undefined);
        }
      },
      close: () => closePool(pool, open, opts.closeGraceMs ?? 10_000, opts.onCloseOverdue ?? (() => {})),
    };
  }
  // Embedded PostgreSQL (PGlite) so `npm start` needs no database server; loaded lazily so the
  // PostgreSQL deployment never pays for the WASM image.
  const { PGlite } = await import('@electric-sql/pglite');
  const { drizzle: drizzlePglite } = await import('drizzle-orm/pglite');
  const dir = resolve(opts.dataDir, 'pglite');
  mkdirSync(dir, { recursive: true });
  const client = await PGlite.create(dir);
  const db = drizzlePglite({ client, schema }) as unknown as Db;
  return {
    db,
    kind: 'pglite',
    run: async <T,>(st: Statement, values: unknown[]) => (await client.query<T>(st.text, values)).rows,
    ping: async () => {
      await client.query('select 1');
    },
    // One process owns an embedded database: nobody to exclude.
    exclusively: <T,>(work: () => Promise<T>) => work(),
    close: () => client.close(),
  };
}

export async function runMigrations(database: Database): Promise<void> {
  const migrationsFolder = migrationsDir();
  if (database.kind === 'postgres') {
    await migratePg(database.db, { migrationsFolder });
  } else {
    const { migrate } = await import('drizzle-orm/pglite/migrator');
    await migrate(database.db as never, { migrationsFolder });
  }
}

/** This database's deployment id, made on first start (see db/tables.ts). */
export async function deploymentId(database: Database): Promise<string> {
  await database.db.insert(deployment).values({ singleton: 1 }).onConflictDoNothing();
  const rows = await database.db.select({ id: deployment.id }).from(deployment).limit(1);
  return rows[0]!.id;
}

/**
 * `db.transaction` that always gives its connection back. drizzle's own sends BEGIN before its `try`: a
 * BEGIN that fails (the connection cut under it, a query timeout) never releases its connection, and
 * `pool.end()` then waits for it forever. A connection that failed under a transaction is closed, not
 * pooled: a BEGIN answered late would leave it inside a transaction.
 */
function transactionsGivingBack(pool: pg.Pool): Db['transaction'] {
  // One drizzle session per pooled connection, made on its first transaction.
  const sessions = new WeakMap<pg.PoolClient, Db>();
  return async (work, config) => {
    const client = await pool.connect();
    let failure: unknown;
    try {
      let session = sessions.get(client);
      if (!session) sessions.set(client, (session = drizzlePg({ client, schema })));
      return await session.transaction(work, config);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      client.release(isUnreachable(failure) ? (failure as Error) : undefined);
    }
  };
}

/**
 * Ends the pool; connections still checked out after `graceMs` (a caller that never gave one back) are
 * destroyed and reported, so a shutdown never waits on them forever.
 */
async function closePool(pool: pg.Pool, open: Set<pg.PoolClient>, graceMs: number, overdue: (state: { checkedOut: number; graceMs: number }) => void) {
  const ended = pool.end();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
  const outcome = await Promise.race([ended, late]);
  clearTimeout(timer);
  if (outcome !== 'late') return;
  overdue({ checkedOut: open.size, graceMs });
  for (const client of open) (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  open.clear();
}

/** Retry delays while PostgreSQL does not answer: doubling from 200 ms to 2 s, with jitter. */
const RECONNECT = { minMs: 200, maxMs: 2000 };

/**
 * A pool that stops dialling a database that does not answer. After a failed connection attempt every
 * caller fails at once (SQLSTATE 08001, answered 503 by the API) until a backoff delay has passed; then
 * one caller probes, and its success lets everyone through again. So a process makes one connection
 * attempt per delay during an outage, whatever its request rate, and nobody waits on a dead database.
 */
class GuardedPool extends pg.Pool {
  private failures = 0;
  private retryAt = 0;
  private probing = false;

  constructor(
    config: pg.PoolConfig,
    private readonly onReachability: (state: { reachable: boolean; delayMs: number | null; err?: string }) => void,
  ) {
    super(config);
  }

  override connect(): Promise<pg.PoolClient>;
  override connect(callback: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): void;
  override connect(callback?: (err: Error | undefined, client: pg.PoolClient | undefined, done: (release?: unknown) => void) => void): Promise<pg.PoolClient> | void {
    const attempt = this.admit();
    const result = attempt ? this.dial() : Promise.reject(unreachable(this.retryAt - Date.now()));
    if (!callback) return result;
    result.then(
      (client) => callback(undefined, client, (release) => client.release(release as Error | undefined)),
      (err: Error) => callback(err, undefined, () => {}),
    );
  }

  /** Whether this call may reach for the database: always while it answers, one probe per delay when not. */
  private admit(): boolean {
    if (this.failures === 0) return true;
    if (this.probing || Date.now() < this.retryAt) return false;
    this.probing = true;
    return true;
  }

  private async dial(): Promise<pg.PoolClient> {
    try {
      const client = await super.connect();
      if (this.failures > 0) {
        this.failures = 0;
        this.onReachability({ reachable: true, delayMs: null });
      }
      return client;
    } catch (err) {
      // Waiting for a free connection of a busy pool is load, not an outage: that caller alone fails.
      if (isUnreachable(err) && !/timeout exceeded when trying to connect/.test((err as Error).message)) {
        const delayMs = backoffDelay(this.failures++, RECONNECT);
        this.retryAt = Date.now() + delayMs;
        this.onReachability({ reachable: false, delayMs, err: (err as Error).message });
      }
      throw err;
    } finally {
      this.probing = false;
    }
  }
}

function unreachable(inMs: number): Error {
  return Object.assign(new Error(`the database is unreachable; next connection attempt in ${Math.max(0, inMs)} ms`), { code: '08001' });
}
