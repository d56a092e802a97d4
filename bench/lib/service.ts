import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import pg from 'pg';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { freePort, sleep } from './proc.js';

export const root = resolve(import.meta.dirname, '../..');

/** The line the cluster launcher prints on stdout once every worker is ready (/work/shared-notes/cluster-contract.md). */
export interface ClusterReady {
  event: 'cluster-ready';
  http: number;
  mqtt: number;
  ws: number;
  workers: { role: string; pid: number }[];
}

/** A running cluster launcher (src/cluster/launcher.ts) and its workers. */
export interface BenchCluster {
  launcher: ChildProcess;
  ready: ClusterReady;
  /** The workers' pids by role, as they are now (a restarted worker replaces the one that died). */
  pids(role: string): number[];
  /** Workers restarted since the cluster became ready. */
  restarts: { role: string; pid: number }[];
}

/** A built service in its own process, on a fresh PostgreSQL database, for benchmarks. */
export interface BenchService {
  base: string;
  mqttPort: number;
  /** MQTT over WebSocket (MQTT_WS_PORT of the cluster contract). */
  wsPort: number;
  redisUrl: string;
  secret: string;
  adminToken: string;
  databaseUrl: string;
  /** Where the service keeps its queues in Redis (`ic:{deployment id}`), once it has started. */
  queuePrefix(): Promise<string>;
  dataDir: string;
  start(extraEnv?: Record<string, string>, nodeArgs?: string[]): Promise<ChildProcess>;
  /**
   * Starts the build's cluster launcher (CLUSTER_LAUNCHER) on the same database and ports instead
   * of the single process; resolves on its cluster-ready line. `stop` and `cleanup` stop it and its workers.
   */
  startCluster(args: string[], extraEnv?: Record<string, string>, readyTimeoutMs?: number): Promise<BenchCluster>;
  /** Log lines at warn or above the running process (or cluster) wrote since it started, counted by level and message. */
  logs(): Map<string, number>;
  stop(): Promise<void>;
  process(): ChildProcess;
  api(method: string, path: string, body?: unknown, contentType?: string): Promise<any>;
  sql<T = any>(text: string, params?: unknown[]): Promise<T[]>;
  cleanup(): Promise<void>;
}

/** The cluster launcher in the build (src/cluster/launcher.ts of /work/shared-notes/cluster-contract.md). */
export const CLUSTER_LAUNCHER = 'dist/src/cluster/launcher.js';

/** Fails unless the build has the cluster launcher (a checkout without it). */
export function assertClusterLauncher(): void {
  if (!existsSync(join(root, CLUSTER_LAUNCHER))) throw new Error(`${CLUSTER_LAUNCHER} is not built: this checkout has no cluster launcher (src/cluster/launcher.ts); --only references runs without it`);
}

export function build() {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}

export async function benchService(pgAdminUrl: string, env: Record<string, string> = {}): Promise<BenchService> {
  const admin = new pg.Client({ connectionString: pgAdminUrl });
  await admin.connect();
  const dbName = `icbench_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(pgAdminUrl);
  dbUrl.pathname = `/${dbName}`;
  const pool = new pg.Pool({ connectionString: dbUrl.toString(), max: 2 });
  pool.on('error', () => {});
  const [httpPort, mqttPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'icbench-'));
  const secret = randomBytes(24).toString('hex');
  const adminToken = `ic_bench_${randomBytes(24).toString('hex')}`;
  const redisUrl = env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const base = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | null = null;
  /** Processes the running launcher reported (its workers), to be sure none outlives it. */
  let workerPids = new Set<number>();
  let logs = new Map<string, number>();

  /** Spawns the service's `script` with the bench environment; stdout's log lines are counted, JSON events handed to `onEvent`. */
  const spawnService = (script: string, args: string[], extraEnv: Record<string, string>, nodeArgs: string[], onEvent?: (e: any) => void) => {
    const c = spawn(process.execPath, [...nodeArgs, join(root, script), ...args], {
      env: {
        ...process.env,
        DATABASE_URL: dbUrl.toString(),
        REDIS_URL: redisUrl,
        HTTP_HOST: '127.0.0.1',
        HTTP_PORT: String(httpPort),
        MQTT_HOST: '0.0.0.0',
        MQTT_PORT: String(mqttPort),
        MQTT_WS_PORT: String(wsPort),
        DATA_DIR: dataDir,
        DEVICE_FACTORY_SECRET: secret,
        ADMIN_TOKEN: adminToken,
        LOG_LEVEL: 'warn',
        // Only bench:sip measures calls; the others run without a Kamailio beside them, as before.
        SIP_SERVER: 'off',
        // The fleet is one client machine: thousands of devices share each source address (127.0.0.2 …).
        MQTT_MAX_CONNECTIONS_PER_ADDRESS: '0',
        ...env,
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child = c;
    logs = new Map();
    workerPids = new Set();
    createInterface({ input: c.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      let e: any;
      try {
        e = JSON.parse(line);
      } catch {
        return;
      }
      if (typeof e.event === 'string') onEvent?.(e);
      else if (typeof e.level === 'number' && e.level >= 40) {
        const key = `${e.level >= 50 ? 'error' : 'warn'}: ${e.msg}`;
        logs.set(key, (logs.get(key) ?? 0) + 1);
      }
    });
    return c;
  };

  const api = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    // The fleet's document fetches share the bench's loopback address and its HTTP connection cap: a
    // connection closed at accept (before any request is read) is tried again.
    const send = () =>
      fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
    let res: Response | undefined;
    for (let attempt = 1; !res; attempt++) {
      try {
        res = await send();
      } catch (err) {
        const code = (err as { cause?: { code?: string } }).cause?.code;
        if (attempt >= 5 || (code !== 'ECONNRESET' && code !== 'ECONNREFUSED')) throw err;
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt));
      }
    }
    const json = (await res.json().catch(() => null)) as any;
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const stop = async () => {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      // A launcher stops its workers first; one that hangs is killed with them.
      if ((await Promise.race([exited.then(() => true), sleep(60_000).then(() => false)])) === false) {
        c.kill('SIGKILL');
        await exited;
      }
    }
    for (const pid of workerPids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    workerPids.clear();
  };

  return {
    base,
    mqttPort,
    wsPort,
    redisUrl,
    secret,
    adminToken,
    databaseUrl: dbUrl.toString(),
    queuePrefix: async () => `ic:${(await pool.query('SELECT id FROM deployment')).rows[0].id}`,
    dataDir,
    async start(extraEnv = {}, nodeArgs = []) {
      const c = spawnService('dist/src/main.js', [], extraEnv, nodeArgs);
      for (let i = 0; ; i++) {
        if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break;
        if (i > 300 || c.exitCode !== null) throw new Error('service did not become ready');
        await sleep(100);
      }
      return c;
    },
    async startCluster(args, extraEnv = {}, readyTimeoutMs = 180_000) {
      assertClusterLauncher();
      const byPid = new Map<number, string>();
      const restarts: { role: string; pid: number }[] = [];
      let settle: { resolve(r: ClusterReady): void; reject(e: Error): void } = { resolve() {}, reject() {} };
      const ready = new Promise<ClusterReady>((resolve, reject) => (settle = { resolve, reject }));
      const launcher = spawnService(CLUSTER_LAUNCHER, args, extraEnv, [], (e) => {
        if (e.event === 'cluster-ready') {
          for (const w of (e as ClusterReady).workers) byPid.set(w.pid, w.role);
          settle.resolve(e as ClusterReady);
        } else if (e.event === 'worker-restarted') {
          restarts.push({ role: e.role, pid: e.pid });
          byPid.set(e.pid, e.role);
        } else return;
        for (const pid of byPid.keys()) workerPids.add(pid);
      });
      const onExit = (code: number | null, signal: string | null) => settle.reject(new Error(`the cluster launcher exited (${signal ?? code}) before it was ready`));
      launcher.once('exit', onExit);
      const timer = setTimeout(() => settle.reject(new Error(`no cluster-ready line within ${readyTimeoutMs / 1000} s`)), readyTimeoutMs);
      const r = await ready.finally(() => {
        clearTimeout(timer);
        launcher.off('exit', onExit);
      });
      return {
        launcher,
        ready: r,
        pids: (role) => [...byPid].filter(([pid, ro]) => ro === role && alive(pid)).map(([pid]) => pid),
        restarts,
      };
    },
    logs: () => logs,
    stop,
    process: () => child!,
    api,
    sql: async (text, params = []) => (await pool.query(text, params)).rows,
    async cleanup() {
      await stop();
      // The deployment's queues leave Redis with it.
      const prefix = await pool.query('SELECT id FROM deployment').then((r) => (r.rows[0] ? `ic:${r.rows[0].id}` : null), () => null);
      if (prefix) {
        const redis = new Redis(redisUrl);
        await deleteKeysUnder(redis, prefix);
        await redis.quit();
      }
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Registers MACs (one CSV import) and binds a device to each, through the API. */
export async function registerFleet(svc: BenchService, macs: string[], concurrency = 16): Promise<void> {
  const installer = await svc.api('POST', '/api/v1/installers', { name: 'Bench installer', email: `bench-${randomBytes(4).toString('hex')}@example.com` });
  for (let i = 0; i < macs.length; i += 50_000) {
    await svc.api('POST', `/api/v1/mac-library/import?installerId=${installer.installer.id}`, ['MAC', ...macs.slice(i, i + 50_000)].join('\n'), 'text/csv');
  }
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < macs.length) {
        const mac = macs[next++]!;
        await svc.api('POST', '/api/v1/devices', { mac, name: `Door ${mac.slice(-5)}`, type: 0 });
      }
    }),
  );
}
