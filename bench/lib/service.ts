import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { freePort, sleep } from './proc.js';

export const root = resolve(import.meta.dirname, '../..');

/** A built service in its own process, on a fresh PostgreSQL database, for benchmarks. */
export interface BenchService {
  base: string;
  mqttPort: number;
  secret: string;
  adminToken: string;
  databaseUrl: string;
  /** Where the service keeps its queues in Redis (`ic:{deployment id}`), once it has started. */
  queuePrefix(): Promise<string>;
  dataDir: string;
  start(extraEnv?: Record<string, string>, nodeArgs?: string[]): Promise<ChildProcess>;
  stop(): Promise<void>;
  process(): ChildProcess;
  api(method: string, path: string, body?: unknown, contentType?: string): Promise<any>;
  sql<T = any>(text: string, params?: unknown[]): Promise<T[]>;
  cleanup(): Promise<void>;
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
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'icbench-'));
  const secret = randomBytes(24).toString('hex');
  const adminToken = `ic_bench_${randomBytes(24).toString('hex')}`;
  const base = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess | null = null;

  const api = async (method: string, path: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(base + path, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': contentType } : {}) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const json = (await res.json().catch(() => null)) as any;
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };

  const stop = async () => {
    if (!child || child.exitCode !== null) return;
    const c = child;
    c.kill('SIGTERM');
    await new Promise((r) => c.once('exit', r));
  };

  return {
    base,
    mqttPort,
    secret,
    adminToken,
    databaseUrl: dbUrl.toString(),
    queuePrefix: async () => `ic:${(await pool.query('SELECT id FROM deployment')).rows[0].id}`,
    dataDir,
    async start(extraEnv = {}, nodeArgs = []) {
      child = spawn(process.execPath, [...nodeArgs, join(root, 'dist/src/main.js')], {
        env: {
          ...process.env,
          DATABASE_URL: dbUrl.toString(),
          HTTP_HOST: '127.0.0.1',
          HTTP_PORT: String(httpPort),
          MQTT_HOST: '0.0.0.0',
          MQTT_PORT: String(mqttPort),
          DATA_DIR: dataDir,
          DEVICE_FACTORY_SECRET: secret,
          ADMIN_TOKEN: adminToken,
          LOG_LEVEL: 'warn',
          ...env,
          ...extraEnv,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      for (let i = 0; ; i++) {
        if (await fetch(`${base}/readyz`).then((r) => r.ok, () => false)) break;
        if (i > 300) throw new Error('service did not become ready');
        await sleep(100);
      }
      return child;
    },
    stop,
    process: () => child!,
    api,
    sql: async (text, params = []) => (await pool.query(text, params)).rows,
    async cleanup() {
      await stop();
      // The deployment's queues leave Redis with it.
      const prefix = await pool.query('SELECT id FROM deployment').then((r) => (r.rows[0] ? `ic:${r.rows[0].id}` : null), () => null);
      if (prefix) {
        const redis = new Redis('redis://127.0.0.1:6379');
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
