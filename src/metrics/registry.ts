import { hostname } from 'node:os';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from '../logger.js';

/** Which part of the service a process runs (the cluster's `ROLE`). */
export type MetricsRole = 'all' | 'gateway' | 'engine' | 'api';

/** The states a finished job ends in (`finishedStates` of the provisioning tables). */
export type FinishedJobState = 'succeeded' | 'failed' | 'expired' | 'canceled';

/** The BullMQ job states `intercom_queue_jobs` reports. */
const queueStates = ['waiting', 'delayed', 'active'] as const;

/** One process's metrics as `Registry.getMetricsAsJSON()` gives them: what processes exchange through Redis. */
export type MetricsSnapshot = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** What `GET /metrics` answers with. */
export interface MetricsEndpoint {
  render(): Promise<{ contentType: string; body: string }>;
}

export interface MetricsOptions {
  role: MetricsRole;
  /** `hostname:pid` unless given. */
  instance?: string;
  /** Node.js process metrics (memory, CPU, event loop lag, GC, handles); on unless false. */
  defaultMetrics?: boolean;
  /** Longest a collect callback may take before the snapshot goes on without it. */
  collectTimeoutMs?: number;
  logger?: Logger;
}

/** `hostname:pid`: names one process of a deployment. */
const defaultInstance = (): string => `${hostname()}:${process.pid}`;

/** Buckets for latencies from 5 ms (a command through a local broker) to 60 s (a slow device's answer). */
const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const secondsSince = (startMs: number, nowMs: number): number => Math.max(0, nowMs - startMs) / 1000;

/**
 * `work`, or a rejection once `ms` have passed. The timer keeps the process alive (it is short and cleared):
 * an unref'd one would let a process with nothing else to do exit in the middle of the wait. The rejection
 * waits for the I/O phase after the timer: a process the machine paused finds the answer that arrived
 * meanwhile before it gives up, so a busy machine is not taken for a slow Redis.
 */
export async function withDeadline<T>(work: () => Promise<T> | T, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(work),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => setImmediate(() => reject(new Error(`${what} took longer than ${ms} ms`))), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The Prometheus metrics of one process, in a registry of its own (not prom-client's global one). Every
 * series carries the labels `role` and `instance`, so the metrics of all processes of a deployment can be
 * merged (`ClusterMetrics`) without one process's series hiding another's.
 *
 * The instruments are public for the callers that need more than the helpers; names are in the README.
 */
export class Metrics implements MetricsEndpoint {
  readonly registry = new Registry();
  readonly role: MetricsRole;
  readonly instance: string;

  // gateway
  readonly gatewaySessions: Gauge;
  readonly gatewayConnects: Counter<'result'>;
  readonly gatewayMessagesReceived: Counter;
  readonly gatewayMessagesSent: Counter;
  readonly gatewayDispatchToDevice: Histogram;
  readonly gatewayDeviceEvents: Counter<'result'>;
  // engine
  readonly jobsCreated: Counter<'kind'>;
  readonly jobsFinished: Counter<'kind' | 'state'>;
  readonly jobDispatchToAnswer: Histogram<'kind'>;
  // queues (set by collect callbacks, see `watchQueue`)
  readonly queueJobs: Gauge<'queue' | 'state'>;
  // device answers waiting for the store (AnswerInbox)
  readonly deviceAnswersWaiting: Gauge;
  readonly deviceAnswersDropped: Counter<'reason'>;
  // firmware downloads
  readonly firmwareDownloadsInFlight: Gauge;
  readonly firmwareDownloadBytes: Counter;

  private readonly collectors = new Set<() => Promise<void> | void>();
  private readonly collectTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly failingCollectors = new WeakSet<object>();

  constructor(opts: MetricsOptions) {
    this.role = opts.role;
    this.instance = opts.instance ?? defaultInstance();
    this.collectTimeoutMs = opts.collectTimeoutMs ?? 2000;
    this.logger = opts.logger;
    this.registry.setDefaultLabels({ role: this.role, instance: this.instance });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: '' });
    const registers = [this.registry];

    this.gatewaySessions = new Gauge({ name: 'intercom_gateway_sessions', help: 'Device sessions (MQTT connections) this process holds', registers });
    this.gatewayConnects = new Counter({
      name: 'intercom_gateway_connects_total',
      help: 'MQTT connection attempts by result: accepted, or refused_<CONNACK return code>',
      labelNames: ['result'],
      registers,
    });
    this.gatewayMessagesReceived = new Counter({ name: 'intercom_gateway_messages_received_total', help: 'MQTT messages received from devices', registers });
    this.gatewayMessagesSent = new Counter({ name: 'intercom_gateway_messages_sent_total', help: 'MQTT messages sent to devices', registers });
    this.gatewayDeviceEvents = new Counter({
      name: 'intercom_gateway_device_events_total',
      help: 'Device events (devices/{MAC}/events) by result: recorded, refused (contradicts the cloud), invalid, rate_limited, failed',
      labelNames: ['result'],
      registers,
    });
    this.gatewayDispatchToDevice = new Histogram({
      name: 'intercom_gateway_dispatch_to_device_seconds',
      help: "Time from the engine's dispatch of a command to the gateway handing it to the device's connection",
      buckets: latencyBuckets,
      registers,
    });

    this.jobsCreated = new Counter({ name: 'intercom_jobs_created_total', help: 'Jobs created, by kind', labelNames: ['kind'], registers });
    this.jobsFinished = new Counter({ name: 'intercom_jobs_finished_total', help: 'Jobs finished, by kind and final state', labelNames: ['kind', 'state'], registers });
    this.jobDispatchToAnswer = new Histogram({
      name: 'intercom_job_dispatch_to_answer_seconds',
      help: "Time from a job's delivery to the device's finishing answer, by kind",
      labelNames: ['kind'],
      buckets: latencyBuckets,
      registers,
    });

    this.queueJobs = new Gauge({ name: 'intercom_queue_jobs', help: 'BullMQ jobs by queue and state (waiting, delayed, active)', labelNames: ['queue', 'state'], registers });
    this.deviceAnswersWaiting = new Gauge({ name: 'intercom_device_answers_waiting', help: 'Hellos and command answers waiting to be applied (the store is away or busy)', registers });
    this.deviceAnswersDropped = new Counter({ name: 'intercom_device_answers_dropped_total', help: 'Device answers dropped because the inbox was full (device_full, inbox_full); their commands are redelivered', labelNames: ['reason'], registers });

    this.firmwareDownloadsInFlight = new Gauge({ name: 'intercom_firmware_downloads_in_flight', help: 'Firmware image downloads being served by this process', registers });
    this.firmwareDownloadBytes = new Counter({ name: 'intercom_firmware_download_bytes_total', help: 'Firmware image bytes sent to devices', registers });
  }

  /** Counts a CONNECT answered with `returnCode` (0: accepted; otherwise `refused_<code>`). */
  connect(returnCode: number): void {
    this.gatewayConnects.inc({ result: returnCode === 0 ? 'accepted' : `refused_${returnCode}` });
  }

  /** Observes a command handed to a device's connection, dispatched by the engine at `dispatchedAtMs`. */
  dispatchedToDevice(dispatchedAtMs: number, nowMs = Date.now()): void {
    this.gatewayDispatchToDevice.observe(secondsSince(dispatchedAtMs, nowMs));
  }

  jobCreated(kind: string, count = 1): void {
    if (count > 0) this.jobsCreated.inc({ kind }, count);
  }

  /** Counts a finished job; `deliveredAtMs` given when it finished on the device's answer to that delivery. */
  jobFinished(kind: string, state: FinishedJobState, deliveredAtMs?: number | null, nowMs = Date.now()): void {
    this.jobsFinished.inc({ kind, state });
    if (deliveredAtMs != null) this.jobDispatchToAnswer.observe({ kind }, secondsSince(deliveredAtMs, nowMs));
  }

  /** Counts one firmware download while it runs; `end` may be called more than once. */
  downloadStarted(): { sent(bytes: number): void; end(): void } {
    this.firmwareDownloadsInFlight.inc();
    let ended = false;
    return {
      sent: (bytes) => {
        if (bytes > 0) this.firmwareDownloadBytes.inc(bytes);
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.firmwareDownloadsInFlight.dec();
      },
    };
  }

  /**
   * Registers a callback run before every snapshot (each `/metrics` answer and each publication to Redis):
   * the place to read values this process can only ask for, such as queue counts. A callback that throws or
   * takes longer than `collectTimeoutMs` is logged and skipped. Returns the function that unregisters it.
   */
  onCollect(collect: () => Promise<void> | void): () => void {
    this.collectors.add(collect);
    return () => void this.collectors.delete(collect);
  }

  /**
   * Reports a BullMQ queue's counts as `intercom_queue_jobs{queue,state}` on every snapshot, e.g.
   * `metrics.watchQueue('provisioning', () => queue.getJobCounts('waiting', 'delayed', 'active'))`.
   * When the counts cannot be read the queue's series are removed rather than left stale. Register it in
   * one role (the engine) only: every process would otherwise report the same queue under its own instance.
   */
  watchQueue(queue: string, counts: () => Promise<Partial<Record<string, number>>>): () => void {
    const unregister = this.onCollect(async () => {
      try {
        const read = await withDeadline(counts, this.collectTimeoutMs, `the counts of queue ${queue}`);
        for (const state of queueStates) this.queueJobs.set({ queue, state }, read[state] ?? 0);
      } catch (err) {
        for (const state of queueStates) this.queueJobs.remove({ queue, state });
        throw err;
      }
    });
    return () => {
      unregister();
      for (const state of queueStates) this.queueJobs.remove({ queue, state });
    };
  }

  /** Runs the collect callbacks, then reads every metric of this process. */
  async snapshot(): Promise<MetricsSnapshot> {
    await Promise.all([...this.collectors].map((collect) => this.runCollector(collect)));
    return this.registry.getMetricsAsJSON();
  }

  /** This process's metrics alone, in the Prometheus text format. */
  async render(): Promise<{ contentType: string; body: string }> {
    await Promise.all([...this.collectors].map((collect) => this.runCollector(collect)));
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  private async runCollector(collect: () => Promise<void> | void): Promise<void> {
    try {
      await withDeadline(collect, this.collectTimeoutMs, 'a collect callback');
      this.failingCollectors.delete(collect);
    } catch (err) {
      // Logged once while it keeps failing (a queue's Redis that is away would otherwise log every scrape).
      if (!this.failingCollectors.has(collect)) {
        this.failingCollectors.add(collect);
        this.logger?.warn({ err: (err as Error).message }, 'a metrics collect callback failed; its metrics are skipped until it works again');
      }
    }
  }
}
