import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Aedes, type Client } from 'aedes';
import type { Redis } from 'ioredis';
import { LocalSessionRegistry, type GatewayMessage, type SessionRegistry } from '../cluster/routing.js';
import type { Config } from '../config.js';
import type { DeviceKeys } from '../devices/device-key.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { CommandChannel, DeviceCommand, DeviceEventSink } from '../provisioning/channel.js';
import type { DomainEvents } from '../shared/events.js';
import { AuthFailureLimiter } from './auth-limiter.js';
import { DeviceEventLimiter } from './event-limiter.js';
import { installHooks } from './hooks.js';
import { leanParser } from './lean-parser.js';
import { parseDeviceEvent, type DeviceEvent } from './payloads.js';
import { PresenceTracker, type PresenceWriter } from './presence-tracker.js';
import { Sessions } from './sessions.js';
import { commandsTopic, MAX_TOPIC_LEVELS } from './topics.js';
import { Transports, type ListeningPorts } from './transports.js';

export type { ListeningPorts } from './transports.js';

export interface GatewayOptions {
  mqtt: Config['mqtt'];
  presenceFlushMs: number;
  keys: DeviceKeys;
  /** Every MAC in the MAC library, loaded once; later changes arrive as domain events. */
  loadMacLibrary: () => Promise<string[]>;
  /**
   * Where presence goes. `markAllOffline` runs at start when this process is the deployment's only
   * gateway; in a cluster a dead process's devices are marked offline by its lease expiring instead.
   */
  presence: { write: PresenceWriter; markAllOffline?: () => Promise<void> };
  /** Which process holds which device's session (in memory for a single process, Redis in a cluster). */
  registry?: SessionRegistry;
  events: DomainEvents;
  logger: Logger;
  /** The deployment's Redis and key prefix: failed authentications are then limited across all gateway processes. */
  shared?: { redis: Redis; prefix: string };
  metrics?: Metrics;
  /**
   * Where devices' events (devices/{MAC}/events) go once validated and within the device's rate: the calls
   * domain records door events, or refuses one that contradicts what it knows (a relay the device lacks).
   */
  deviceEvents?: (mac: string, event: DeviceEvent) => Promise<DeviceEventResult>;
}

/** What the receiver made of a device event: recorded, or refused with the reason (logged and counted). */
export type DeviceEventResult = { recorded: true } | { recorded: false; refused: string };

/**
 * The device gateway: an embedded MQTT broker (aedes) behind its transports, with the hooks that
 * authenticate and confine devices and the sessions that track them. Implements the provisioning
 * engine's CommandChannel; reports what devices say to a DeviceEventSink.
 */
export class DeviceGateway implements CommandChannel {
  private broker!: Aedes;
  private readonly macLibrary = new Set<string>();
  private readonly limiter: AuthFailureLimiter;
  /** Events per device and minute (`DEVICE_EVENTS_PER_MINUTE`). */
  readonly eventLimiter: DeviceEventLimiter;
  private readonly presence: PresenceTracker;
  private readonly sessions: Sessions;
  private readonly transports: Transports;
  private readonly unsubscribe: (() => void)[] = [];
  private accepting = true;
  private stopping: Promise<void> | null = null;
  private readonly log: Logger;

  constructor(private readonly opts: GatewayOptions) {
    this.log = opts.logger.child({ component: 'device-gateway' });
    this.limiter = new AuthFailureLimiter(opts.mqtt.authFailuresPerMinute, { shared: opts.shared, log: this.log });
    this.eventLimiter = new DeviceEventLimiter(opts.mqtt.eventsPerMinute);
    this.presence = new PresenceTracker(opts.presence.write, opts.presenceFlushMs, this.log);
    this.transports = new Transports({ mqtt: opts.mqtt, handle: (stream, req) => void leanParser(this.broker.handle(stream, req)), log: this.log });
    const registry = opts.registry ?? new LocalSessionRegistry(`${process.pid}`);
    this.sessions = new Sessions(this.presence, (client) => this.addressOf(client), registry, this.log);
  }

  get connectedDevices(): number {
    return this.sessions.size;
  }

  get connections(): number {
    return this.transports.connections;
  }

  isReady(): boolean {
    return !!this.broker && !this.broker.closed && this.accepting;
  }

  /**
   * A device's event: within the device's rate, validated at the boundary, then checked by its receiver.
   * One that fails any of these is logged and counted, and dropped; the session stays.
   */
  private deviceEvent(mac: string, payload: Buffer): void {
    const counted = (result: string) => this.opts.metrics?.gatewayDeviceEvents.inc({ result });
    if (!this.eventLimiter.take(mac)) {
      counted('rate_limited');
      return void this.log.warn({ mac }, 'device event dropped: over the rate limit');
    }
    const parsed = parseDeviceEvent(payload);
    if (!parsed.ok) {
      counted('invalid');
      return void this.log.warn({ mac, reason: parsed.reason }, 'device event refused');
    }
    this.opts.deviceEvents?.(mac, parsed.value).then(
      (result) => {
        if (result.recorded) return void counted('recorded');
        counted('refused');
        this.log.warn({ mac, reason: result.refused }, 'device event refused');
      },
      (err: unknown) => {
        counted('failed');
        this.log.warn({ mac, err: (err as Error).message }, 'device event not recorded');
      },
    );
  }

  setSink(sink: DeviceEventSink) {
    this.sessions.setSink(sink);
  }

  private addressOf(client: Client): string {
    return this.transports.addressOf(client.conn);
  }

  async start(): Promise<void> {
    await this.limiter.start();
    for (const mac of await this.opts.loadMacLibrary()) this.macLibrary.add(mac);
    await this.opts.presence.markAllOffline?.();
    this.unsubscribe.push(
      this.opts.events.on('mac-library.added', ({ macs }) => macs.forEach((m) => this.macLibrary.add(m))),
      this.opts.events.on('mac-library.removed', ({ mac }) => {
        this.macLibrary.delete(mac);
        this.opts.keys.forget(mac);
        this.sessions.close(mac, 'MAC removed from the MAC library');
      }),
      this.opts.events.on('device.removed', ({ mac }) => this.sessions.close(mac, 'device deleted')),
    );

    this.broker = await Aedes.createBroker({
      // Counted from accept: in a storm a CONNECT can wait in the socket behind thousands of others, and a
      // device closed for our slowness retries (30 s, as aedes' and mqtt.js' own defaults).
      connectTimeout: this.opts.mqtt.connectTimeoutMs,
      drainTimeout: 30_000,
      maxTopicLevels: MAX_TOPIC_LEVELS + 2,
      concurrency: 1000,
      heartbeatInterval: 60_000,
    });
    installHooks(this.broker, {
      macLibrary: this.macLibrary,
      keys: this.opts.keys,
      limiter: this.limiter,
      sessions: this.sessions,
      addressOf: (client) => this.addressOf(client),
      accepting: () => this.accepting,
      maxPayloadBytes: this.opts.mqtt.maxPayloadBytes,
      metrics: this.opts.metrics,
      deviceEvent: (mac, payload) => this.deviceEvent(mac, payload),
      log: this.log,
    });
    this.broker.on('client', (client) => this.sessions.opened(client));
    this.opts.metrics?.onCollect(() => this.opts.metrics!.gatewaySessions.set(this.sessions.size));
    this.broker.on('clientDisconnect', (client) => this.sessions.closed(client));
    this.broker.on('keepaliveTimeout', (client) => this.log.info({ mac: client.id }, 'keepalive expired'));
    this.broker.on('clientError', (client, err) => this.log.debug({ mac: client.id, err: err.message }, 'device connection error'));
    this.broker.on('connectionError', (client, err) => this.log.info({ mac: client.id, ip: this.addressOf(client), err: err.message }, 'connection refused'));
    this.presence.start();
  }

  /**
   * Loads the MAC library again (a cluster's events travel over pub/sub, which loses what is sent while a
   * connection is down): MACs gone meanwhile are forgotten and their sessions closed.
   */
  async refreshMacLibrary(): Promise<void> {
    const addedMeanwhile = new Set<string>();
    const off = this.opts.events.on('mac-library.added', ({ macs }) => macs.forEach((m) => addedMeanwhile.add(m)));
    let now: Set<string>;
    try {
      now = new Set(await this.opts.loadMacLibrary());
    } finally {
      off();
    }
    for (const mac of this.macLibrary) {
      if (now.has(mac) || addedMeanwhile.has(mac)) continue;
      this.macLibrary.delete(mac);
      this.opts.keys.forget(mac);
      this.sessions.close(mac, 'MAC removed from the MAC library');
    }
    for (const mac of now) this.macLibrary.add(mac);
  }

  listen(): Promise<ListeningPorts> {
    return this.transports.listen();
  }

  /** MQTT over WebSocket at /mqtt on the HTTP port. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.transports.handleUpgrade(req, socket, head);
  }

  async connectedSince(mac: string): Promise<number | null> {
    return this.sessions.connectedSince(mac);
  }

  /** Writes the sessions this process holds back into the cluster's registry (after Redis lost it). */
  restoreSessions(): Promise<number> {
    return this.sessions.restoreRegistry();
  }

  /** A message routed to this process (cluster): a command for a device it holds, or a takeover. */
  deliver(message: GatewayMessage): void {
    if (message.t === 'close') {
      this.sessions.close(message.mac, message.reason, Number(message.epoch));
      return;
    }
    // The session moved on meanwhile: the job's deadline redelivers to wherever it is now.
    if (!this.sessions.holds(message.mac)) return;
    this.publish(message.mac, message.command, message.dispatchedAt).catch((err: unknown) => this.log.warn({ mac: message.mac, err: (err as Error).message }, 'routed command not published'));
  }

  /** Publishes a command to a device's commands topic at QoS 1, stamped with this delivery's time. */
  publish(mac: string, command: DeviceCommand | Record<string, unknown>, dispatchedAt = Date.now()): Promise<void> {
    const payload = Buffer.from(JSON.stringify({ ...command, sentAt: Date.now() }));
    return new Promise((resolve, reject) =>
      this.broker.publish({ cmd: 'publish', topic: commandsTopic(mac), payload, qos: 1, dup: false, retain: false }, (err) => {
        if (err) return reject(err);
        this.opts.metrics?.gatewayMessagesSent.inc();
        this.opts.metrics?.dispatchedToDevice(dispatchedAt);
        resolve();
      }),
    );
  }

  /** Closes a device's current session, if any. */
  disconnect(mac: string, reason: string) {
    this.sessions.close(mac, reason);
  }

  /** What the broker holds for devices beyond their sessions (retained messages), for tests and operators. */
  async retainedCount(): Promise<number> {
    let n = 0;
    const persistence = (this.broker as unknown as { persistence: { createRetainedStream(pattern: string): AsyncIterable<unknown> } }).persistence;
    for await (const _ of persistence.createRetainedStream('#')) n++;
    return n;
  }

  /** Stops accepting, closes every device session cleanly and writes the last presence. */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.accepting = false;
    for (const off of this.unsubscribe) off();
    const listenersClosed = this.transports.close();
    await Promise.race([Promise.all([listenersClosed, this.sessions.closeAll()]), new Promise((r) => setTimeout(r, 5000).unref())]);
    if (this.broker) await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    this.limiter.close();
    this.eventLimiter.close();
    await this.presence.stop();
  }

  /** Writes every presence change made so far (for tests that need the database current). */
  flushPresence(): Promise<void> {
    return this.presence.flushed();
  }
}
