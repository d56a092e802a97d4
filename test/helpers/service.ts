import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import pg from 'pg';
import { freePort } from '../../src/infra/net.js';
import { spawnTied } from '../../src/infra/tied-child.js';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startService, type Plugins, type RunningService } from '../../src/service.js';
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
  api<T = any>(method: string, path: string, opts?: { token?: string | null; body?: unknown; raw?: string | Buffer; contentType?: string; headers?: Record<string, string> }): Promise<ApiResponse<T>>;
  createInstaller(name?: string): Promise<{ id: string; token: string }>;
  /** Adds the MAC to the installer's library and binds a device to it. */
  addDevice(token: string, mac: string, fields?: Record<string, unknown>): Promise<any>;
  device(mac: string, opts?: Partial<SimulatedDeviceOptions>): SimulatedDevice;
  /** A device added to `token`'s installer, started, holding its configuration and connected. */
  provisionedDevice(token: string, mac: string, opts?: Partial<SimulatedDeviceOptions>): Promise<SimulatedDevice>;
  sql<T = any>(text: string, params?: unknown[]): Promise<T[]>;
}

/** The environment of a test service that starts its own Kamailio, on free ports of 127.0.0.1. */
export const SIP_ON_FREE_PORTS = { SIP_SERVER: undefined, SIP_HOST: '127.0.0.1', SIP_UDP_PORT: '0', SIP_TCP_PORT: '0', SIP_TLS_PORT: '0', SIP_WS_PORT: '0', SIP_WSS_PORT: '0' };

let installerCounter = 0;

export async function startTestService(t: Teardown, env: Record<string, string | undefined> = {}, plugins: Plugins = {}): Promise<TestService> {
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
    // Calls tests start Kamailio themselves (SIP_SERVER unset, SIP ports 0); the others need none.
    SIP_SERVER: 'off',
    ...env,
    DATABASE_URL: databaseUrl,
  });
  const service = await startService(config, createLogger(config.logLevel), { PATH: process.env.PATH }, plugins);
  const devices: SimulatedDevice[] = [];
  t.teardown(async () => {
    await Promise.all(devices.map((d) => d.stop(false)));
    await service.close();
    // Every test database is a deployment of its own, with its own queues: they leave with the test.
    await removeQueues(config.redis.url, service.queuePrefix);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const httpUrl = `http://127.0.0.1:${service.ports.http}`;
  const mqttUrl = `mqtt://127.0.0.1:${service.ports.mqtt}`;

  const api = apiClient(httpUrl);

  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
  pool.on('error', () => {});
  t.teardown(() => pool.end());

  const svc: TestService = {
    service,
    httpUrl,
    mqttUrl,
    dataDir,
    api,
    ...installerActions(api),
    device(mac, opts = {}) {
      const d = new SimulatedDevice({ mac, url: mqttUrl, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: false, ...opts });
      devices.push(d);
      return d;
    },
    async provisionedDevice(token, mac, opts = {}) {
      await svc.addDevice(token, mac);
      const d = svc.device(mac, opts);
      d.start();
      await waitFor(() => d.configHash, Boolean);
      await waitFor(() => service.gateway.connectedSince(mac), (since) => since !== null);
      return d;
    },
    async sql(text, params = []) {
      return (await pool.query(text, params)).rows;
    },
  };
  return svc;
}

/**
 * Polls until `accept` holds and answers the value; throws when it never does. The timeout is a guard
 * against a hang, not a measure: it is generous so that a loaded machine passes.
 */
export async function waitFor<T>(probe: () => Promise<T> | T, accept: (v: T) => boolean, timeoutMs = 60_000, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await probe();
  while (!accept(last)) {
    if (Date.now() > deadline) throw new Error(`waitFor: still not there after ${timeoutMs} ms; last value: ${JSON.stringify(last)?.slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, stepMs));
    last = await probe();
  }
  return last;
}

/** Deletes a deployment's queues from Redis (every key under its prefix). */
export async function removeQueues(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  try {
    await redis.connect();
    await deleteKeysUnder(redis, prefix);
  } catch {
    /* a Redis a test stopped has nothing left to remove */
  } finally {
    redis.disconnect();
  }
}

/** A private redis-server (no persistence) a test may stop and start again, empty, on the same port. */
export async function startRedis(t: Teardown): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const start = async () => {
    // Tied: a killed test process leaves no redis-server holding the port.
    child = spawnTied('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    const ping = () => {
      const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      return probe
        .connect()
        .then(() => probe.ping())
        .catch(() => null)
        .finally(() => probe.disconnect());
    };
    await waitFor(ping, (pong) => pong === 'PONG', 30_000, 50);
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  };
  await start();
  t.teardown(stop);
  return { url: `redis://127.0.0.1:${port}`, stop, start };
}

export const once = <T = unknown>(emitter: { once(event: string, fn: (...a: any[]) => void): unknown }, event: string, timeoutMs = 60_000): Promise<T> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), timeoutMs);
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      resolve(v);
    });
  });

/** Resolves once the engine has processed a hello of this device. */
export function helloProcessed(svc: TestService, mac: string): Promise<void> {
  return new Promise((resolve) => {
    const stop = svc.service.engine.observe({
      helloProcessed(m) {
        if (m !== mac) return;
        stop();
        resolve();
      },
    });
  });
}

/** Resolves once a job's twin waits delayed in Redis: the engine has decided the job must wait. */
export async function parked(svc: TestService, jobId: string): Promise<void> {
  const key = `${svc.service.queuePrefix}:provisioning:delayed`;
  await waitFor(() => svc.service.redis.client.zscore(key, jobId), (score) => score !== null);
}

/** Talks to the API as the distributor (ADMIN_TOKEN) unless a token is given. */
export function apiClient(httpUrl: string): TestService['api'] {
  return async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
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
    // A guard against a hang, not a measure of speed.
    const res = await fetch(httpUrl + path, { method, headers, body, signal: AbortSignal.timeout(60_000) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };
}

/** The REST API under /api/v1 as one caller (a token) uses it. */
export function apiAs(api: TestService['api'], token: string) {
  return {
    get: (path: string) => api('GET', `/api/v1${path}`, { token }),
    post: (path: string, body: unknown = {}) => api('POST', `/api/v1${path}`, { token, body }),
    patch: (path: string, body: unknown) => api('PATCH', `/api/v1${path}`, { token, body }),
    del: (path: string) => api('DELETE', `/api/v1${path}`, { token }),
  };
}

/** What an installer does first: its account, its MAC library and devices. */
export function installerActions(api: TestService['api']): Pick<TestService, 'createInstaller' | 'addDevice'> {
  return {
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
  };
}
