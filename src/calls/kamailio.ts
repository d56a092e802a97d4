import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary } from '../infra/binaries.js';
import { canConnect, reachableHost } from '../infra/net.js';
import type { SipConfig } from '../config.js';
import type { Logger } from '../logger.js';

/** Where stations reach the SIP server, per transport: what device configuration and app accounts carry. */
export interface SipEndpoint {
  /** The SIP domain and digest realm: accounts are sip:{number}@{domain}. */
  domain: string;
  host: string;
  ports: { udp: number; tcp: number; tls: number | null; ws: number; wss: number | null };
}

export interface KamailioSettings {
  /** Address Kamailio listens on. */
  listenHost: string;
  /** Address stations are told (Kamailio advertises it when it differs from the listen address). */
  publicHost: string;
  domain: string;
  ports: { udp: number; tcp: number; tls: number; ws: number; wss: number };
  tls: { certFile: string; keyFile: string } | null;
  /** The service's SIP back end on its own listener, e.g. http://127.0.0.1:<SIP_BACKEND_PORT>/internal/sip, and its token. */
  backendUrl: string;
  backendToken: string;
  authFailures: number;
  authBlockSeconds: number;
  ringTimeoutSeconds: number;
  children: number;
  maxConnections: number;
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  modulesDir: string;
}

const KAMAILIO_LOG_LEVEL = { error: -1, warn: 0, info: 2, debug: 3 } as const;

/** A file of the template shipped with the service (src/calls/), from source or from dist/. */
function templateFile(name: string): string {
  for (const dir of ['./', '../../../src/calls/']) {
    try {
      return readFileSync(new URL(dir + name, import.meta.url), 'utf8');
    } catch {
      /* try the next place */
    }
  }
  throw new Error(`src/calls/${name} not found next to the service`);
}

/** The template (src/calls/kamailio.cfg) as one file: each `include_file "name"` line is replaced by that file. */
function kamailioTemplate(): string {
  return templateFile('kamailio.cfg').replace(/^include_file "([a-z-]+\.cfg)"$/gm, (_, name: string) => templateFile(name).trimEnd());
}

/** Fills the template: every {{NAME}} must be known, so a typo fails here and not inside Kamailio. */
export function renderKamailioConfig(s: KamailioSettings, tlsConfigFile: string | null, template = kamailioTemplate()): string {
  const advertise = s.publicHost !== s.listenHost && net.isIP(s.publicHost) ? ` advertise ${s.publicHost}` : '';
  const values: Record<string, string> = {
    DEFINES: s.tls ? '#!define WITH_TLS' : '',
    LOG_LEVEL: String(KAMAILIO_LOG_LEVEL[s.logLevel]),
    CHILDREN: String(s.children),
    DOMAIN: s.domain,
    // A name is an alias of this server; an IP must not be one: with any port it would make every
    // station's contact on this host "myself", and in-dialog requests would loop back here.
    ALIAS: net.isIP(s.domain) ? '# the SIP domain is an IP address of this server: no alias' : `alias="${s.domain}"`,
    LISTEN_HOST: s.listenHost,
    ADVERTISE: advertise,
    UDP_PORT: String(s.ports.udp),
    TCP_PORT: String(s.ports.tcp),
    TLS_PORT: String(s.ports.tls),
    WS_PORT: String(s.ports.ws),
    WSS_PORT: String(s.tls ? s.ports.wss : s.ports.ws),
    MAX_CONNECTIONS: String(s.maxConnections),
    MODULES_DIR: s.modulesDir,
    RING_TIMEOUT_MS: String(s.ringTimeoutSeconds * 1000),
    AUTH_FAILURES: String(s.authFailures),
    AUTH_BLOCK_SECONDS: String(s.authBlockSeconds),
    TLS_CONFIG: tlsConfigFile ?? '',
    BACKEND: s.backendUrl,
    BACKEND_TOKEN: s.backendToken,
  };
  return template.replace(/\{\{([A-Z_]+)\}\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`kamailio.cfg: unknown placeholder {{${name}}}`);
    return v;
  });
}

function tlsConfig(tls: { certFile: string; keyFile: string }): string {
  return ['[server:default]', 'method = TLSv1.2+', 'verify_certificate = no', 'require_certificate = no', `private_key = ${tls.keyFile}`, `certificate = ${tls.certFile}`, '', '[client:default]', 'verify_certificate = no', 'require_certificate = no', ''].join('\n');
}

const MODULE_DIRS = ['/usr/lib/x86_64-linux-gnu/kamailio/modules', '/usr/lib/aarch64-linux-gnu/kamailio/modules', '/usr/lib/kamailio/modules', '/usr/local/lib64/kamailio/modules'];

/** Debian's kamailio and its modules directory (with the WebSocket and HTTP-client modules), when installed. */
export function findKamailio(pathEnv?: string): { binary: string; modulesDir: string } | null {
  const binary = findBinary('kamailio', pathEnv);
  const modulesDir = MODULE_DIRS.find((d) => {
    try {
      accessSync(join(d, 'websocket.so'), constants.R_OK);
      accessSync(join(d, 'http_client.so'), constants.R_OK);
      return true;
    } catch {
      return false;
    }
  });
  return binary && modulesDir ? { binary, modulesDir } : null;
}

/** A port free for both UDP and TCP on the host (SIP listens on both with one number). */
export async function freeSipPort(host: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, host, () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (await udpFree(host, port)) return port;
  }
  throw new Error('no port free for both UDP and TCP');
}

const udpFree = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    sock.once('error', () => resolve(false));
    sock.bind(port, host, () => sock.close(() => resolve(true)));
  });

const tcpFree = (host: string, port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });

/** Both UDP and TCP of a port are free. */
const sipPortFree = async (host: string, port: number) => (await tcpFree(host, port)) && (await udpFree(host, port));

/**
 * The child's ports: as configured; 0 picks a free one; with none configured, a default that is taken on
 * this machine falls back to a free one (as MQTT's 1883 does), so `npm start` runs beside another server.
 */
export async function sipPorts(sip: Pick<SipConfig, 'listenHost' | 'ports' | 'portsExplicit'>): Promise<KamailioSettings['ports']> {
  const host = sip.listenHost;
  const pick = async (port: number, both: boolean) => {
    if (port !== 0 && (sip.portsExplicit || (both ? await sipPortFree(host, port) : await tcpFree(host, port)))) return port;
    return freeSipPort(host);
  };
  // UDP and TCP share one number unless configured apart.
  const udp = await pick(sip.ports.udp, true);
  const tcp = sip.ports.tcp === sip.ports.udp ? udp : await pick(sip.ports.tcp, true);
  return { udp, tcp, tls: await pick(sip.ports.tls, false), ws: await pick(sip.ports.ws, false), wss: await pick(sip.ports.wss, false) };
}

export interface KamailioChild {
  process: ChildProcess;
  /** The generated configuration (it holds the back-end token: the directory is private to this user). */
  configFile: string;
  /** Resolves when the child has exited. */
  exited: Promise<number | null>;
  alive(): boolean;
  /** Kamailio's main process (from its pid file), for operators and tests. */
  pid(): number | null;
  stop(): Promise<void>;
}

/**
 * Starts Kamailio in the foreground as a child with the rendered configuration; resolves once it accepts
 * TCP on its SIP port. Its log lines go to the service's log.
 */
async function startKamailio(binary: string, settings: KamailioSettings, logger: Logger): Promise<KamailioChild> {
  const dir = mkdtempSync(join(tmpdir(), 'intercom-kamailio-'));
  const tlsFile = settings.tls ? join(dir, 'tls.cfg') : null;
  if (tlsFile) writeFileSync(tlsFile, tlsConfig(settings.tls!), { mode: 0o600 });
  const configFile = join(dir, 'kamailio.cfg');
  writeFileSync(configFile, renderKamailioConfig(settings, tlsFile), { mode: 0o600 });

  const check = spawn(binary, ['-c', '-f', configFile, '-L', settings.modulesDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let checkOutput = '';
  check.stdout!.on('data', (d: Buffer) => (checkOutput += d.toString()));
  check.stderr!.on('data', (d: Buffer) => (checkOutput += d.toString()));
  const checkCode = await new Promise<number | null>((resolve) => check.once('exit', resolve));
  if (checkCode !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`kamailio refused the generated configuration:\n${checkOutput.split('\n').filter((l) => /ERROR|error/.test(l)).slice(0, 10).join('\n')}`);
  }

  // Kamailio outlives a parent that dies (kill -9, a crash) and keeps the SIP ports, and its workers outlive
  // a main process that dies. So a small shell leads a process group of its own: it holds the read end of
  // a pipe from this process, stops Kamailio when the pipe closes (stop() or this process's end), and once
  // Kamailio's main process is gone, kills whatever of the group is left (workers still holding ports).
  const args = ['-DD', '-E', '-f', configFile, '-L', settings.modulesDir, '-P', join(dir, 'kamailio.pid'), '-Y', dir, '-w', dir, '-m', '128', '-M', '16'];
  const guard = 'exec 3<&0; "$@" </dev/null & pid=$!; { read _ <&3; kill -TERM $pid 2>/dev/null; } & wait $pid; kill -KILL 0';
  const child = spawn('/bin/sh', ['-c', guard, 'kamailio-guard', binary, ...args], { stdio: ['pipe', 'ignore', 'pipe'], detached: true });
  const log = logger.child({ component: 'kamailio' });
  let tail = '';
  let stopping = false;
  child.stderr!.on('data', (d: Buffer) => {
    const text = tail + d.toString();
    const lines = text.split('\n');
    tail = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      // Workers report their siblings' ends while Kamailio stops: not news.
      if (stopping) log.debug(line);
      else if (/ERROR|CRITICAL|ALERT/.test(line)) log.error(line);
      else if (/WARNING/.test(line)) log.warn(line);
      else log.debug(line);
    }
  });
  let running = true;
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      running = false;
      resolve(code);
    }),
  );
  const stop = async () => {
    stopping = true;
    if (running) {
      child.stdin!.end();
      const timer = setTimeout(() => {
        // Still there after 5 s: the guard and Kamailio's main process (its pid file) go hard.
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          /* gone already */
        }
      }, 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const pid = () => {
    try {
      return Number(readFileSync(join(dir, 'kamailio.pid'), 'utf8')) || null;
    } catch {
      return null;
    }
  };
  const connectHost = reachableHost(settings.listenHost);
  for (let i = 0; i < 100 && running; i++) {
    if (await canConnect(connectHost, settings.ports.tcp)) return { process: child, configFile, exited, alive: () => running, pid, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`kamailio did not start listening on ${connectHost}:${settings.ports.tcp}`);
}

/**
 * Kamailio kept running: started now, started again when it dies (1 s, doubling to 30 s while a start
 * fails), so calls come back by themselves. `stop()` ends it for good.
 */
export async function superviseKamailio(binary: string, settings: KamailioSettings, logger: Logger): Promise<Pick<KamailioChild, 'alive' | 'pid' | 'stop'>> {
  let child = await startKamailio(binary, settings, logger);
  let stopped = false;
  let restartDelayMs = 1000;
  const watch = (current: KamailioChild) => {
    void current.exited.then((code) => {
      if (stopped) return;
      logger.error({ code, restartInMs: restartDelayMs }, 'kamailio exited: calls are down until it is restarted');
      const timer = setTimeout(() => {
        if (stopped) return;
        startKamailio(binary, settings, logger).then(
          (next) => {
            if (stopped) return void next.stop();
            child = next;
            restartDelayMs = 1000;
            logger.info('kamailio restarted');
            watch(next);
          },
          (err: unknown) => {
            logger.error({ err: (err as Error).message }, 'kamailio did not restart');
            restartDelayMs = Math.min(restartDelayMs * 2, 30_000);
            watch(current);
          },
        );
      }, restartDelayMs);
      timer.unref();
    });
  };
  watch(child);
  return {
    alive: () => child.alive(),
    pid: () => child.pid(),
    stop: async () => {
      stopped = true;
      await child.stop();
    },
  };
}

/** What an app is told: apps register over WebSocket, over TLS when the deployment has a certificate. */
export function appSipAccess(endpoint: SipEndpoint): { domain: string; servers: { transport: 'ws' | 'wss'; host: string; port: number; url: string }[] } {
  const servers: { transport: 'ws' | 'wss'; host: string; port: number; url: string }[] = [];
  if (endpoint.ports.wss) servers.push({ transport: 'wss', host: endpoint.host, port: endpoint.ports.wss, url: `wss://${endpoint.host}:${endpoint.ports.wss}/` });
  servers.push({ transport: 'ws', host: endpoint.host, port: endpoint.ports.ws, url: `ws://${endpoint.host}:${endpoint.ports.ws}/` });
  return { domain: endpoint.domain, servers };
}
