import { EventEmitter } from 'node:events';
import { backoffDelay, isTransient, type Backoff } from '../infra/backoff.js';
import type { Logger } from '../logger.js';
import type { CommandStatus, DeviceEventSink, HelloFacts } from './channel.js';

/** What a device said, waiting to be applied: its hello, its readiness, or an answer to a command. */
type Said = { what: 'hello'; hello: HelloFacts } | { what: 'ready' } | { what: 'status'; jobId: string; status: CommandStatus };

interface Entry {
  said: Said;
  /** Arrival order across all devices: the oldest is dropped first when the inbox is full. */
  seq: number;
  inFlight: boolean;
  settle(err?: Error): void;
}

export interface AnswerInboxOptions {
  log: Logger;
  /** How many things one device may have waiting (a device answers one job at a time: a few suffice). */
  maxPerDevice?: number;
  /** How many things may wait across all devices (about 200 bytes each). */
  maxTotal?: number;
  /** Retry delays while the store is away (one timer for the whole inbox). */
  retry?: Backoff;
  metrics?: { waiting: { set(n: number): void }; dropped: { inc(labels: { reason: string }): void } };
}

/**
 * Stands between the gateway and the engine (a DeviceEventSink wrapping one): what each device says is
 * applied in the order it said it, once each, and a failure because the database or Redis is away is
 * retried (backoff with jitter, one timer for all devices) until the store is back, instead of being lost.
 * The engine's statements are conditional on the job's state, so an answer applied again after an
 * ambiguous failure changes nothing. Bounded: past `maxPerDevice` for a device, or `maxTotal` in all, the
 * oldest waiting item is dropped with a log line and `intercom_device_answers_dropped_total`; the engine
 * redelivers the command (same id) and the device answers it again, so a drop costs time, not a job.
 */
export class AnswerInbox extends EventEmitter<{ applied: [string]; dropped: [{ mac: string; what: string; reason: string }]; retrying: [{ delayMs: number; err: string }] }> implements DeviceEventSink {
  private readonly queues = new Map<string, Entry[]>();
  private total = 0;
  private seq = 0;
  /** Consecutive transient failures (any device); a success resets it. */
  private failures = 0;
  /** While set, the store is away: every device waits for this before its next try. */
  private pause: { done: Promise<void>; timer: NodeJS.Timeout; resume(): void } | null = null;
  private closed = false;
  private readonly maxPerDevice: number;
  private readonly maxTotal: number;
  private readonly retry: Backoff;

  constructor(
    private readonly sink: DeviceEventSink,
    private readonly opts: AnswerInboxOptions,
  ) {
    super();
    this.maxPerDevice = opts.maxPerDevice ?? 32;
    this.maxTotal = opts.maxTotal ?? 20_000;
    this.retry = opts.retry ?? { minMs: 200, maxMs: 2000 };
  }

  /** Things waiting to be applied, across all devices. */
  get waiting(): number {
    return this.total;
  }

  deviceHello(mac: string, hello: HelloFacts): Promise<void> {
    return this.push(mac, { what: 'hello', hello });
  }

  deviceReady(mac: string): Promise<void> {
    return this.push(mac, { what: 'ready' });
  }

  commandStatus(mac: string, jobId: string, status: CommandStatus): Promise<void> {
    return this.push(mac, { what: 'status', jobId, status });
  }

  /** Hellos that arrived together go to the engine in one call when nothing of theirs waits (a storm). */
  devicesHello(batch: { mac: string; hello: HelloFacts }[]): Promise<void> {
    return this.batched(
      batch.map(({ mac, hello }) => ({ mac, said: { what: 'hello', hello } as Said })),
      this.sink.devicesHello ? () => this.sink.devicesHello!(batch) : null,
    );
  }

  devicesReady(macs: string[]): Promise<void> {
    return this.batched(
      macs.map((mac) => ({ mac, said: { what: 'ready' } as Said })),
      this.sink.devicesReady ? () => this.sink.devicesReady!(macs) : null,
    );
  }

  /**
   * One call for a batch, each item in its device's queue meanwhile (what the device says next waits behind
   * it); a failed batch is applied item by item, with the usual retries. Devices with something waiting, a
   * paused inbox or a sink without the batched call take the one-by-one path from the start.
   */
  private async batched(items: { mac: string; said: Said }[], all: (() => Promise<void>) | null): Promise<void> {
    const macs = items.map((i) => i.mac);
    if (!all || this.closed || this.pause || new Set(macs).size !== macs.length || macs.some((m) => this.queues.has(m))) {
      await Promise.all(items.map((i) => this.push(i.mac, i.said)));
      return;
    }
    const held = items.map(({ mac, said }) => {
      let settle!: (err?: Error) => void;
      const settled = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
      const entry: Entry = { said, seq: this.seq++, inFlight: true, settle };
      const queue = [entry];
      this.queues.set(mac, queue);
      return { mac, entry, queue, settled };
    });
    this.total += held.length;
    this.opts.metrics?.waiting.set(this.total);
    let failed = false;
    try {
      await all();
      this.failures = 0;
    } catch (err) {
      failed = true;
      this.opts.log.debug({ err: (err as Error).message, devices: held.length }, 'a batch of device hellos failed; applied one by one');
    }
    for (const { mac, entry, queue } of held) {
      if (failed) entry.inFlight = false;
      else {
        this.done(queue, entry);
        this.emit('applied', mac);
      }
      if (queue.length) void this.drain(mac, queue);
      else if (this.queues.get(mac) === queue) this.queues.delete(mac);
    }
    await Promise.all(held.map((h) => h.settled));
  }

  /** Stops retrying; what still waits is left to the engine's redelivery. */
  async stop(): Promise<void> {
    this.closed = true;
    if (this.pause) {
      clearTimeout(this.pause.timer);
      this.pause.resume();
    }
    if (this.total) this.opts.log.warn({ waiting: this.total }, 'stopping with device answers not applied; the engine redelivers their commands');
  }

  /** Resolves once applied (or dropped: the inbox logs that); rejects when the sink refused it for good. */
  private push(mac: string, said: Said): Promise<void> {
    if (this.closed) return this.applyNow(mac, said);
    return new Promise<void>((resolve, reject) => {
      const entry: Entry = { said, seq: this.seq++, inFlight: false, settle: (err) => (err ? reject(err) : resolve()) };
      let queue = this.queues.get(mac);
      const idle = !queue;
      if (!queue) this.queues.set(mac, (queue = []));
      if (queue.filter((e) => !e.inFlight).length >= this.maxPerDevice) this.drop(mac, queue, 'device_full');
      else if (this.total >= this.maxTotal) this.dropOldest();
      queue.push(entry);
      this.total++;
      this.opts.metrics?.waiting.set(this.total);
      if (idle) void this.drain(mac, queue);
    });
  }

  private applyNow(mac: string, said: Said): Promise<void> {
    if (said.what === 'hello') return this.sink.deviceHello(mac, said.hello);
    if (said.what === 'ready') return this.sink.deviceReady(mac);
    return this.sink.commandStatus(mac, said.jobId, said.status);
  }

  /** Applies one device's items in order; the only loop that touches that device's queue head. */
  private async drain(mac: string, queue: Entry[]): Promise<void> {
    while (queue.length && !this.closed) {
      if (this.pause) {
        // The head may be dropped meanwhile: it is read again after the wait.
        await this.pause.done;
        continue;
      }
      const entry = queue[0]!;
      entry.inFlight = true;
      try {
        await this.applyNow(mac, entry.said);
        this.failures = 0;
        this.done(queue, entry);
        this.emit('applied', mac);
      } catch (err) {
        entry.inFlight = false;
        if (isTransient(err)) {
          this.wait(err as Error);
          continue;
        }
        this.done(queue, entry, err as Error);
      }
    }
    if (this.queues.get(mac) === queue && !queue.length) this.queues.delete(mac);
  }

  private done(queue: Entry[], entry: Entry, err?: Error) {
    const i = queue.indexOf(entry);
    if (i >= 0) queue.splice(i, 1);
    this.total--;
    this.opts.metrics?.waiting.set(this.total);
    entry.settle(err);
  }

  /** The store is away: one timer (backoff with jitter) holds every device until the next try. */
  private wait(err: Error) {
    if (this.pause) return;
    const delayMs = backoffDelay(this.failures++, this.retry);
    let resume!: () => void;
    const done = new Promise<void>((r) => (resume = r));
    const timer = setTimeout(() => {
      this.pause = null;
      resume();
    }, delayMs);
    this.pause = { done, timer, resume };
    if (this.failures === 1 || this.failures % 10 === 0) this.opts.log.warn({ err: err.message, waiting: this.total, retryInMs: delayMs }, 'device answers wait for the store to come back');
    this.emit('retrying', { delayMs, err: err.message });
  }

  /** The inbox is full: the oldest item not being applied goes (its device's redelivery recovers it). */
  private dropOldest() {
    let oldest: { mac: string; queue: Entry[]; seq: number } | null = null;
    for (const [mac, queue] of this.queues) {
      const head = queue.find((e) => !e.inFlight);
      if (head && (!oldest || head.seq < oldest.seq)) oldest = { mac, queue, seq: head.seq };
    }
    if (oldest) this.drop(oldest.mac, oldest.queue, 'inbox_full');
  }

  private drop(mac: string, queue: Entry[], reason: string) {
    const entry = queue.find((e) => !e.inFlight);
    if (!entry) return;
    const what = entry.said.what === 'status' ? `status of ${entry.said.jobId}` : entry.said.what;
    this.opts.log.warn({ mac, what, reason }, 'device answer dropped: the inbox is full; the command is redelivered');
    this.opts.metrics?.dropped.inc({ reason });
    this.done(queue, entry);
    this.emit('dropped', { mac, what, reason });
  }
}
