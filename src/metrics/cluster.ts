import type { Redis } from 'ioredis';
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import { withDeadline, type Metrics, type MetricsEndpoint, type MetricsSnapshot } from './registry.js';

export interface ClusterMetricsOptions {
  metrics: Metrics;
  /** The process's Redis; ClusterMetrics talks to it over a fail-fast duplicate connection of its own. */
  redis: Redis;
  /** The deployment's prefix (`{QUEUE_PREFIX}:{deployment id}`); the snapshots live in the hash `{queuePrefix}:metrics`. */
  queuePrefix: string;
  /** How often this process publishes its snapshot; 5000 ms unless given. */
  intervalMs?: number;
  /** A snapshot older than this is dropped (and removed from Redis); three intervals unless given. */
  staleAfterMs?: number;
  /** Longest a Redis read or write may take; 1000 ms unless given. */
  timeoutMs?: number;
  /** The clock snapshots are stamped and judged stale by (Date.now unless given; tests inject their own). */
  now?: () => number;
  logger?: Logger;
}

/** What one process keeps in the hash, under its instance. */
interface PublishedSnapshot {
  at: number;
  role: string;
  instance: string;
  metrics: MetricsSnapshot;
}

/** Removes a field only while it still holds the value that was found stale (its process may have come back since). */
const DELETE_IF_UNCHANGED = `if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0`;

/**
 * Merges snapshots of several processes into one registry. Every series carries the labels role and
 * instance, so no two processes' series meet: each keeps its own (a gauge per process, counters and
 * histograms per process). Every metric is merged with `sum`, which leaves such series as they are, so that
 * metrics prom-client would otherwise drop (`omit`, e.g. process_start_time_seconds) are kept too.
 */
function mergeSnapshots(snapshots: MetricsSnapshot[]): Registry<PrometheusContentType> {
  return AggregatorRegistry.aggregate<PrometheusContentType>(snapshots.map((metrics) => metrics.map((metric) => ({ ...metric, aggregator: 'sum' as const }))));
}

/**
 * The metrics of every process of a deployment. Each process publishes its snapshot to Redis every
 * `intervalMs` (`start()`); the process serving `/metrics` reads them all, drops the stale ones, puts its own
 * fresh snapshot in place of its published one and merges them (`render()`). Without Redis it answers with
 * its own metrics alone, and says so in the log once per outage.
 */
export class ClusterMetrics implements MetricsEndpoint {
  /** The Redis hash holding one snapshot per process (field = instance). */
  readonly key: string;
  private readonly redis: Redis;
  private readonly intervalMs: number;
  private readonly staleAfterMs: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private publishing: Promise<void> | null = null;
  private stopped = false;
  private stopping: Promise<void> | null = null;
  private redisTrouble = false;

  constructor(private readonly opts: ClusterMetricsOptions) {
    this.key = `${opts.queuePrefix}:metrics`;
    this.intervalMs = opts.intervalMs ?? 5000;
    this.staleAfterMs = opts.staleAfterMs ?? 3 * this.intervalMs;
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.now = opts.now ?? Date.now;
    // Fails fast instead of queueing commands while Redis is away: a scrape must never wait for it.
    this.redis = opts.redis.duplicate({ lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: this.timeoutMs });
    this.redis.on('error', () => {}); // reported through the failing commands, once per outage
  }

  get instance(): string {
    return this.opts.metrics.instance;
  }

  /** Publishes now and then every `intervalMs` (the timer does not keep the process alive). */
  start(): void {
    if (this.timer || this.stopped) return;
    // The first snapshot goes out as soon as the connection is up (commands are not queued before).
    if (this.redis.status === 'ready') void this.publish();
    else this.redis.once('ready', () => void this.publish());
    this.timer = setInterval(() => void this.publish(), this.intervalMs);
    this.timer.unref();
  }

  /** Resolves once the connection is up, or after the timeout (a first publish right after start waits for it). */
  private connected(): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.redis.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, this.timeoutMs);
      this.redis.once('ready', done);
    });
  }

  /** Writes this process's snapshot to Redis once; failures are logged, never thrown. */
  publish(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.publishing ??= this.connected()
      .then(() => this.writeSnapshot())
      .finally(() => {
      this.publishing = null;
    });
    return this.publishing;
  }

  /** The merged registry of every live process of the deployment (this process's own alone without Redis). */
  async collect(): Promise<Registry<PrometheusContentType>> {
    const local = await this.opts.metrics.snapshot();
    const others: MetricsSnapshot[] = [];
    try {
      const entries = await withDeadline(() => this.redis.hgetall(this.key), this.timeoutMs, 'reading the metrics of the other processes');
      const oldest = this.now() - this.staleAfterMs;
      const stale: [string, string][] = [];
      for (const [instance, value] of Object.entries(entries)) {
        if (instance === this.instance) continue; // replaced by the fresh local snapshot
        const entry = parse(value);
        if (entry && entry.at >= oldest) others.push(entry.metrics);
        else stale.push([instance, value]);
      }
      if (stale.length) void this.removeStale(stale);
      this.redisBack();
    } catch (err) {
      this.redisFailed(err);
    }
    try {
      return mergeSnapshots([local, ...others]);
    } catch (err) {
      this.opts.logger?.warn({ err: (err as Error).message }, 'merging the metrics of the other processes failed; answering with this process alone');
      return mergeSnapshots([local]);
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    const registry = await this.collect();
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** Stops publishing and removes this process's snapshot from Redis (once; later calls wait for the first). */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.publishing;
    try {
      await withDeadline(() => this.redis.hdel(this.key, this.instance), this.timeoutMs, 'removing this process from the metrics');
    } catch {
      // Redis away: the entry goes stale and the next reader removes it.
    }
    this.redis.disconnect();
  }

  private async writeSnapshot(): Promise<void> {
    try {
      const metrics = await this.opts.metrics.snapshot();
      const entry: PublishedSnapshot = { at: this.now(), role: this.opts.metrics.role, instance: this.instance, metrics };
      await withDeadline(
        async () => {
          const results = await this.redis
            .multi()
            .hset(this.key, this.instance, JSON.stringify(entry))
            // The hash goes away by itself when no process of the deployment publishes any more.
            .pexpire(this.key, 2 * this.staleAfterMs)
            .exec();
          const failed = results?.find(([err]) => err);
          if (!results || failed) throw failed?.[0] ?? new Error('the transaction was discarded');
        },
        this.timeoutMs,
        'publishing the metrics of this process',
      );
      this.redisBack();
    } catch (err) {
      this.redisFailed(err);
    }
  }

  private async removeStale(stale: [string, string][]): Promise<void> {
    try {
      await withDeadline(
        () => Promise.all(stale.map(([instance, value]) => this.redis.eval(DELETE_IF_UNCHANGED, 1, this.key, instance, value))),
        this.timeoutMs,
        'removing stale metrics',
      );
      this.opts.logger?.debug({ instances: stale.map(([instance]) => instance) }, 'removed the metrics of processes that stopped publishing');
    } catch (err) {
      this.redisFailed(err);
    }
  }

  private redisFailed(err: unknown): void {
    if (this.redisTrouble) return;
    this.redisTrouble = true;
    this.opts.logger?.warn({ err: (err as Error).message, key: this.key }, 'metrics cannot reach Redis; /metrics shows this process alone until it can');
  }

  private redisBack(): void {
    if (!this.redisTrouble) return;
    this.redisTrouble = false;
    this.opts.logger?.info({ key: this.key }, 'metrics reach Redis again');
  }
}

function parse(value: string): PublishedSnapshot | null {
  try {
    const entry = JSON.parse(value) as Partial<PublishedSnapshot>;
    return typeof entry.at === 'number' && Array.isArray(entry.metrics) ? (entry as PublishedSnapshot) : null;
  } catch {
    return null;
  }
}
