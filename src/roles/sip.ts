import { randomBytes } from 'node:crypto';
import { buildSipBackend } from '../api/sip-backend-server.js';
import { findKamailio, sipPorts, superviseKamailio, type KamailioSettings, type SipEndpoint } from '../calls/kamailio.js';
import type { CallService } from '../calls/service.js';
import type { Config } from '../config.js';
import { canConnect, reachableHost } from '../infra/net.js';
import type { ProcessBase } from './process.js';

/**
 * The SIP server of this process's deployment: an external one (known from the start), a Kamailio child
 * (role `all` only; known once started), or none. Its back end (/internal/sip) runs in API processes.
 */
export class SipServer {
  /** Installed Kamailio for a child (null: not a child, or not installed: calls are off). */
  private readonly kamailio: ReturnType<typeof findKamailio>;
  private readonly backendToken: string | null;
  /** How /readyz learns the SIP server answers (null: none runs or is configured); a child still starting is not ready. */
  private alive: (() => Promise<boolean>) | null;
  private childPid = (): number | null => null;
  private backendUrl = '';
  /** Kamailio's back end's port (null: none runs here). */
  backendPort: number | null = null;

  constructor(
    private readonly base: ProcessBase,
    env: { PATH?: string },
  ) {
    const { config, role } = base;
    if (config.sip.mode === 'external') base.reach.sip = externalSipEndpoint(config);
    this.backendToken = config.sip.mode === 'external' ? config.sip.backendToken! : config.sip.mode === 'child' ? (config.sip.backendToken ?? randomBytes(24).toString('base64url')) : null;
    this.kamailio = config.sip.mode === 'child' && role === 'all' ? findKamailio(env.PATH) : null;
    const sip = () => base.reach.sip!;
    this.alive = config.sip.mode === 'external' ? () => canConnect(sip().host, sip().ports.tcp) : this.kamailio ? async () => false : null;
  }

  /** The readiness check of the SIP server, for the API's /readyz. */
  readiness = async (): Promise<'ok' | 'failing' | 'off'> => (this.alive ? ((await this.alive()) ? 'ok' : 'failing') : 'off');

  /** The Kamailio child's main process id (null: none runs here). */
  pid(): number | null {
    return this.childPid();
  }

  /**
   * Kamailio's back end listens apart from the public port (SIP_BACKEND_HOST, loopback by default): a
   * public client that takes every HTTP connection cannot make SIP authentication fail.
   */
  async startBackend(calls: CallService): Promise<void> {
    const { config, logger, shutdown } = this.base;
    if (!this.backendToken || !(config.sip.mode === 'external' || this.kamailio)) return;
    const backend = await buildSipBackend({ logger, calls, token: this.backendToken, headersTimeoutMs: config.http.headersTimeoutMs, requestTimeoutMs: config.http.requestTimeoutMs });
    shutdown.add('sip back end', () => backend.close());
    await backend.listen({ host: config.sip.backend.host, port: config.sip.backend.port });
    backend.server.on('error', (err: NodeJS.ErrnoException) => logger.error({ err: err.message, code: err.code }, 'SIP back end accept failed; still listening'));
    this.backendPort = (backend.server.address() as { port: number }).port;
    const host = reachableHost(config.sip.backend.host);
    this.backendUrl = `http://${host.includes(':') ? `[${host}]` : host}:${this.backendPort}/internal/sip`;
  }

  /** Starts the Kamailio child of a single process once HTTP listens; restarted when it dies (1 s, doubling to 30 s). */
  async startChild(httpPort: number | null): Promise<void> {
    const { config, logger, shutdown, reach } = this.base;
    if (config.sip.mode !== 'child' || this.base.role !== 'all' || httpPort === null) return;
    const kamailio = this.kamailio;
    if (!kamailio) return void logger.warn('kamailio is not installed (Debian: apt-get install kamailio kamailio-websocket-modules kamailio-tls-modules kamailio-utils-modules): calls are off');
    const ports = await sipPorts(config.sip);
    const publicHost = sipPublicHost(config, reach.publicUrl);
    const settings: KamailioSettings = {
      listenHost: config.sip.listenHost,
      publicHost,
      domain: config.sip.domain ?? publicHost,
      ports,
      tls: config.mqtt.tls ? { certFile: config.mqtt.tls.certFile, keyFile: config.mqtt.tls.keyFile } : null,
      backendUrl: this.backendUrl,
      backendToken: this.backendToken!,
      authFailures: config.sip.authFailures,
      authBlockSeconds: config.sip.authBlockSeconds,
      ringTimeoutSeconds: config.sip.ringTimeoutSeconds,
      children: config.sip.workers,
      maxConnections: config.sip.maxConnections,
      logLevel: config.logLevel === 'debug' || config.logLevel === 'trace' ? 'info' : 'warn',
      modulesDir: kamailio.modulesDir,
    };
    const child = await superviseKamailio(kamailio.binary, settings, logger);
    this.childPid = () => child.pid();
    shutdown.add('kamailio', () => child.stop());
    reach.sip = {
      domain: settings.domain,
      host: publicHost,
      ports: { udp: ports.udp, tcp: ports.tcp, tls: config.mqtt.tls ? ports.tls : null, ws: ports.ws, wss: config.mqtt.tls ? ports.wss : null },
    };
    this.alive = async () => child.alive() && (await canConnect(reachableHost(config.sip.listenHost), ports.tcp));
  }
}

/** The host stations are told: SIP_PUBLIC_HOST, else the host of the public URL. */
function sipPublicHost(config: Config, publicUrl: string): string {
  return config.sip.publicHost ?? (publicUrl ? new URL(publicUrl).hostname : reachableHost(config.sip.listenHost));
}

function externalSipEndpoint(config: Config): SipEndpoint {
  const host = config.sip.publicHost ?? config.sip.server!;
  const { ports } = config.sip;
  return { domain: config.sip.domain ?? host, host, ports: { udp: ports.udp, tcp: ports.tcp, tls: ports.tls, ws: ports.ws, wss: ports.wss } };
}
