import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startService, type RunningService } from '../../src/service.js';
import { SimulatedDevice, type SimulatedDeviceOptions } from '../../simulators/device-simulator.js';

export const FACTORY_SECRET = 'test-factory-secret-0123456789abcdef';
export const ADMIN_TOKEN = 'ic_test_admin_token_0123456789abcdefghij';
const ADMIN_DB_URL = process.env.TEST_PG_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A fresh PostgreSQL database for one test file, dropped when it ends. */
export async function createTestDatabase(t: Teardown): Promise<string> {
  const name = `ictest_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DB_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: ADMIN_DB_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(ADMIN_DB_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface TestService {
  service: RunningService;
  httpUrl: string;
  mqttUrl: string;
  dataDir: string;
  api<T = any>(method: string, path: string, opts?: { token?: string | null; body?: unknown; raw?: string | Buffer; contentType?: string }): Promise<ApiResponse<T>>;
  createInstaller(name?: string): Promise<{ id: string; token: string }>;
  /** Adds the MAC to the installer's library and binds a device to it. */
  addDevice(token: string, mac: string, fields?: Record<string, unknown>): Promise<any>;
  device(mac: string, opts?: Partial<SimulatedDeviceOptions>): SimulatedDevice;
  sql<T = any>(text: string, params?: unknown[]): Promise<T[]>;
}

let installerCounter = 0;

export async function startTestService(t: Teardown, env: Record<string, string | undefined> = {}): Promise<TestService> {
  const dataDir = mkdtempSync(join(tmpdir(), 'icloud-test-'));
  const databaseUrl = 'DATABASE_URL' in env ? env.DATABASE_URL : await createTestDatabase(t);
  const config = loadConfig({
    HTTP_HOST: '127.0.0.1',
    HTTP_PORT: '0',
    MQTT_HOST: '127.0.0.1',
    MQTT_PORT: '0',
    REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    DEVICE_FACTORY_SECRET: FACTORY_SECRET,
    ADMIN_TOKEN,
    DATA_DIR: dataDir,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PRESENCE_FLUSH_MS: '50',
    // Every test service has its own BullMQ queue on the shared Redis.
    JOB_QUEUE_NAME: `test-${randomBytes(6).toString('hex')}`,
    ...env,
    DATABASE_URL: databaseUrl,
  });
  const service = await startService(config, createLogger(config.logLevel), { PATH: process.env.PATH });
  const devices: SimulatedDevice[] = [];
  t.teardown(async () => {
    await Promise.all(devices.map((d) => d.stop(false)));
    await service.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  const httpUrl = `http://127.0.0.1:${service.ports.http}`;
  const mqttUrl = `mqtt://127.0.0.1:${service.ports.mqtt}`;

  const api: TestService['api'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | Buffer | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      headers['content-type'] = opts.contentType ?? 'text/csv';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = opts.contentType ?? 'application/json';
    }
    const res = await fetch(httpUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };

  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on('error', () => {});
  t.teardown(() => pool.end());

  return {
    service,
    httpUrl,
    mqttUrl,
    dataDir,
    api,
    async createInstaller(name = `Installer ${++installerCounter}`) {
      const res = await api('POST', '/api/v1/installers', { body: { name, email: `${randomBytes(4).toString('hex')}@installer.test` } });
      if (res.status !== 201) throw new Error(`createInstaller: ${res.status} ${JSON.stringify(res.body)}`);
      return { id: res.body.installer.id, token: res.body.token.token };
    },
    async addDevice(token, mac, fields = {}) {
      const lib = await api('POST', '/api/v1/mac-library', { token, body: { mac } });
      if (lib.status !== 201) throw new Error(`add MAC: ${lib.status} ${JSON.stringify(lib.body)}`);
      const dev = await api('POST', '/api/v1/devices', { token, body: { mac, name: `Gate ${mac.slice(-4)}`, type: 0, ...fields } });
      if (dev.status !== 201) throw new Error(`add device: ${dev.status} ${JSON.stringify(dev.body)}`);
      return dev.body;
    },
    device(mac, opts = {}) {
      const d = new SimulatedDevice({ mac, url: mqttUrl, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: false, ...opts });
      devices.push(d);
      return d;
    },
    async sql(text, params = []) {
      return (await pool.query(text, params)).rows;
    },
  };
}

export async function waitFor<T>(probe: () => Promise<T> | T, accept: (v: T) => boolean, timeoutMs = 5000, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!accept(last)) {
    if (Date.now() > deadline) return last;
    await new Promise((r) => setTimeout(r, stepMs));
    last = await probe();
  }
  return last;
}

export const once = <T = unknown>(emitter: { once(event: string, fn: (...a: any[]) => void): unknown }, event: string, timeoutMs = 5000): Promise<T> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), timeoutMs);
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
