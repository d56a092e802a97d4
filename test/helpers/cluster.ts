import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { SimulatedDevice, type SimulatedDeviceOptions } from '../../simulators/device-simulator.js';
import { ADMIN_TOKEN, apiClient, createTestDatabase, FACTORY_SECRET, installerActions, removeQueues, type TestService } from './service.js';

const root = resolve(import.meta.dirname, '../..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface ClusterWorker {
  role: 'gateway' | 'engine' | 'api';
  pid: number;
}

/** A cluster started by the real launcher (real processes, real ports), as an operator starts it. */
export interface TestCluster extends Pick<TestService, 'api' | 'createInstaller' | 'addDevice' | 'sql'> {
  httpUrl: string;
  mqttUrl: string;
  wsUrl: string;
  /** The gateways' MQTTS address when they were given TLS_CERT_FILE and TLS_KEY_FILE, else null. */
  mqttsUrl: string | null;
  /** The cluster's PostgreSQL: another launcher given it joins the same deployment (another machine). */
  databaseUrl: string;
  workers: ClusterWorker[];
  /** The launcher (the cluster's primary) and its data directory. */
  launcherPid: number;
  dataDir: string;
  /** Lines of JSON the launcher printed (cluster-ready, worker-restarted). */
  events: EventEmitter;
  device(mac: string, opts?: Partial<SimulatedDeviceOptions>): SimulatedDevice;
  /** The gateway process (pid) holding a device's session, from the database. */
  holderPid(mac: string): Promise<number | null>;
  /** Resolves with the next worker the launcher restarts. */
  nextRestart(role: ClusterWorker['role'], timeoutMs?: number): Promise<ClusterWorker>;
}

export async function startTestCluster(
  t: Teardown,
  opts: {
    gateways: number;
    engines: number;
    apis?: number;
    env?: Record<string, string>;
    databaseUrl?: string;
    /** Where the test itself reads the database (when the cluster's way there is cut on purpose). */
    sqlUrl?: string;
    redisUrl?: string;
  },
): Promise<TestCluster> {
  const databaseUrl = opts.databaseUrl ?? (await createTestDatabase(t));
  const redisUrl = opts.redisUrl ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const dataDir = mkdtempSync(join(tmpdir(), 'icloud-cluster-'));
  // --exit-with-parent: the launcher reads a pipe from this process and stops the cluster when it closes,
  // so a test that is killed (its timeout, kill -9) leaves no launcher and no workers behind.
  const launcherArgs = ['--gateways', String(opts.gateways), '--engines', String(opts.engines), '--apis', String(opts.apis ?? 1), '--exit-with-parent'];
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cluster/launcher.ts'), ...launcherArgs], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      DATABASE_POOL_SIZE: '4',
      REDIS_URL: redisUrl,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: '0',
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: '0',
      MQTT_WS_PORT: '0',
      DEVICE_FACTORY_SECRET: FACTORY_SECRET,
      ADMIN_TOKEN,
      DATA_DIR: dataDir,
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
      PRESENCE_FLUSH_MS: '50',
      ...opts.env,
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.stdin!.on('error', () => {});
  const events = new EventEmitter();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    try {
      const m = JSON.parse(line) as { event?: string };
      if (m.event) events.emit(m.event, m);
    } catch {
      /* a log line */
    }
  });
  const devices: SimulatedDevice[] = [];
  const pool = new pg.Pool({ connectionString: opts.sqlUrl ?? databaseUrl, max: 2 });
  pool.on('error', () => {});
  t.teardown(async () => {
    await Promise.all(devices.map((d) => d.stop(false)));
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(force);
    }
    const prefix = (await pool.query('SELECT id FROM deployment').catch(() => ({ rows: [] }))).rows[0]?.id;
    await pool.end();
    if (prefix) await removeQueues(redisUrl, `ic:${prefix}`);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const ready = await new Promise<{ http: number; mqtt: number; ws: number; mqtts?: number | null; workers: ClusterWorker[] }>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error('the cluster did not become ready within 120 s')), 120_000);
    child.once('exit', (code) => reject(new Error(`the launcher exited (${code}) before the cluster was ready`)));
    events.once('cluster-ready', (m) => {
      clearTimeout(timer);
      resolvePromise(m);
    });
  });
  const httpUrl = `http://127.0.0.1:${ready.http}`;
  const mqttUrl = `mqtt://127.0.0.1:${ready.mqtt}`;
  const api = apiClient(httpUrl);
  const sql = async (text: string, params: unknown[] = []) => (await pool.query(text, params)).rows;
  return {
    httpUrl,
    mqttUrl,
    wsUrl: `ws://127.0.0.1:${ready.ws}/mqtt`,
    mqttsUrl: ready.mqtts ? `mqtts://127.0.0.1:${ready.mqtts}` : null,
    databaseUrl,
    workers: ready.workers,
    launcherPid: child.pid!,
    dataDir,
    events,
    api,
    ...installerActions(api),
    sql,
    device(mac, deviceOpts = {}) {
      const d = new SimulatedDevice({ mac, url: mqttUrl, factorySecret: FACTORY_SECRET, model: 'R29', firmware: '29.30.10.112', reconnect: { minMs: 100, maxMs: 400 }, ...deviceOpts });
      devices.push(d);
      return d;
    },
    async holderPid(mac) {
      const [row] = await sql(`SELECT session_gateway AS g FROM devices WHERE mac = $1 AND status = 'online'`, [mac]);
      // Gateway instances are named host-pid-random.
      return row?.g ? Number(String(row.g).split('-').at(-2)) : null;
    },
    nextRestart(role, timeoutMs = 120_000) {
      return new Promise((resolvePromise, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${role} restarted within ${timeoutMs} ms`)), timeoutMs);
        const seen = (m: ClusterWorker) => {
          if (m.role !== role) return;
          events.off('worker-restarted', seen);
          clearTimeout(timer);
          resolvePromise(m);
        };
        events.on('worker-restarted', seen);
      });
    },
  };
}

/**
 * A TCP relay in front of PostgreSQL: `cut()` drops every connection and refuses new ones (the database
 * is unreachable), `restore()` lets them through again.
 */
export async function databaseRelay(t: Teardown, target = { host: '127.0.0.1', port: 5432 }): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolvePromise, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => {});
        }
        client.pipe(upstream).pipe(client);
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as net.AddressInfo).port;
        resolvePromise();
      });
    });
  const cut = async () => {
    const s = server;
    server = null;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };
  await listen();
  t.teardown(cut);
  return { port, cut, restore: listen };
}
