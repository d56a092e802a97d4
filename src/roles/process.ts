import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { SipEndpoint } from '../calls/kamailio.js';
import { ClusterBus } from '../cluster/bus.js';
import type { Config, Role } from '../config.js';
import type { Database } from '../db/client.js';
import type { HttpLimits } from '../infra/connection-caps.js';
import type { RedisHandle } from '../infra/redis.js';
import type { Logger } from '../logger.js';
import { ClusterMetrics } from '../metrics/cluster.js';
import { Metrics } from '../metrics/registry.js';
import type { DomainEvents } from '../shared/events.js';

/** Which parts a role runs: `all` runs every one. */
export interface Runs {
  gateway: boolean;
  engine: boolean;
  api: boolean;
}

export function runsOf(role: Role): Runs {
  return { gateway: role === 'all' || role === 'gateway', engine: role === 'all' || role === 'engine', api: role === 'all' || role === 'api' };
}

/** This process's name in the cluster (host, pid and a random part). */
export function instanceName(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * The steps that stop a process, run in reverse order of registration. Each part's stop is registered
 * before its start: stopping is safe after a start that failed halfway.
 */
export class Shutdown {
  private readonly steps: [string, () => Promise<void>][] = [];

  constructor(private readonly logger: Logger) {}

  add(name: string, step: () => Promise<void>): void {
    this.steps.push([name, step]);
  }

  /** A periodic task of this process, ended at shutdown; it never keeps the process alive. */
  every(name: string, ms: number, task: () => void): void {
    const timer = setInterval(task, ms);
    timer.unref();
    this.add(name, async () => clearInterval(timer));
  }

  async run(): Promise<void> {
    for (const [name, step] of this.steps.reverse()) {
      const started = Date.now();
      await step().catch((err: unknown) => this.logger.error({ err, step: name }, 'shutdown step failed'));
      this.logger.debug({ step: name, ms: Date.now() - started }, 'shutdown step done');
    }
  }
}

/** What every part of a process shares, whatever its role. */
export interface ProcessBase {
  config: Config;
  logger: Logger;
  role: Role;
  /** Not `all`: other processes of the deployment hold sessions, drive jobs or serve HTTP. */
  cluster: boolean;
  runs: Runs;
  instance: string;
  database: Database;
  redis: RedisHandle;
  queuePrefix: string;
  shutdown: Shutdown;
  /**
   * Known late: the HTTP address devices learn from commands (downloads, documents) once the API
   * listens, and a child SIP server's endpoint once it started. Read at use, never copied.
   */
  reach: { publicUrl: string; sip: SipEndpoint | null };
}

/**
 * Metrics and, in a cluster, the bus. Each process counts for itself and publishes to Redis; /metrics
 * merges the deployment's processes. Domain events travel over the bus between processes.
 */
export async function startSharedParts(base: ProcessBase, events: DomainEvents) {
  const { role, instance, logger, redis, queuePrefix, shutdown } = base;
  const metrics = new Metrics({ role, instance, logger });
  const clusterMetrics = new ClusterMetrics({ metrics, redis: redis.client, queuePrefix, logger });
  shutdown.add('metrics', () => clusterMetrics.stop());
  clusterMetrics.start();

  const bus = base.cluster ? new ClusterBus(redis.client, queuePrefix, instance, logger) : null;
  if (bus) {
    bus.forward(events);
    shutdown.add('cluster events', () => bus.stop());
    await bus.start();
  }
  return { metrics, clusterMetrics, bus };
}

/** The timeouts and caps of every public HTTP listener; trusted proxies are exempt from the per-address cap. */
export function httpLimits(config: Config): HttpLimits {
  const { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, trustProxy } = config.http;
  return { headersTimeoutMs, requestTimeoutMs, keepAliveTimeoutMs, maxConnections, maxConnectionsPerAddress, exempt: trustProxy };
}
