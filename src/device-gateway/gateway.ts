import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Config } from '../config.js';
import { deviceKeyBytes } from '../devices/device-key.js';
import type { PresenceStore } from '../devices/presence.js';
import type { Logger } from '../logger.js';
import { isCanonicalMac } from '../mac-library/mac.js';
import type { DomainEvents } from '../shared/events.js';
import { AuthFailureLimiter } from './auth-limiter.js';
import { guardFrames } from './frame-guard.js';
import { parseHello } from './hello.js';
import { PresenceTracker } from './presence-tracker.js';
import { checkDevicePublish, checkDeviceSubscribe, commandStatusJobId, commandsTopic, helloTopic, MAX_TOPIC_LEVELS } from './topics.js';

// CONNACK return codes of MQTT 3.1.1.
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
/** A CONNACK with "server unavailable", written to connections over the cap before they are closed. */
const CONNACK_SERVER_UNAVAILABLE = Buffer.from([0x20, 0x02, 0x00, SERVER_UNAVAILABLE]);
/** Room for the topic and headers on top of the largest accepted payload. */
const FRAME_OVERHEAD = 1024;
/** How long after CONNECT a device without a valid hello still gets its commands. */
const HELLO_GRACE_MS = 5000;

/** What the gateway reports to the provisioning engine. */
export interface DeviceEventSink {
  deviceConnected(mac: string): Promise<void>;
  deviceHello(mac: string, hello: { configHash?: string; firmware?: string }): Promise<void>;
  commandStatus(mac: string, jobId: string, payload: Buffer): Promise<void>;
}

export interface GatewayOptions {
  mqtt: Config['mqtt'];
  presenceFlushMs: number;
  factorySecret: string;
  /** Every MAC in the MAC library, loaded once; later changes arrive as domain events. */
  loadMacLibrary: () => Promise<string[]>;
  presenceStore: PresenceStore;
  events: DomainEvents;
  logger: Logger;
  /** Set once the provisioning engine exists. */
  sink?: DeviceEventSink;
}

export interface ListeningPorts {
  mqtt: number;
  mqtts: number | null;
}

const authError = (returnCode: number, message: string): AuthenticateError => Object.assign(new Error(message), { returnCode }) as AuthenticateError;

export class DeviceGateway {
  private broker!: Aedes;
  /** The current session of each connected MAC; a takeover replaces the entry. */
  private readonly sessions = new Map<string, Client>();
  private readonly sessionStart = new WeakMap<Client, number>();
  private readonly helloSeen = new WeakSet<Client>();
  private sink: DeviceEventSink | undefined;
  /** The MAC library, with each device's expected key once derived (null until its first connect). */
  private readonly macLibrary = new Map<string, Buffer | null>();
  private readonly sourceAddress = new WeakMap<object, string>();
  private readonly limiter: AuthFailureLimiter;
  private readonly presence: PresenceTracker;
  private readonly servers: net.Server[] = [];
  private readonly wss: WebSocketServer;
  private readonly unsubscribe: (() => void)[] = [];
  private openConnections = 0;
  private accepting = true;
  private stopping: Promise<void> | null = null;
  private readonly log: Logger;

  constructor(private readonly opts: GatewayOptions) {
    this.log = opts.logger.child({ component: 'device-gateway' });
    this.sink = opts.sink;
    this.limiter = new AuthFailureLimiter(opts.mqtt.authFailuresPerMinute);
    this.presence = new PresenceTracker(opts.presenceStore, opts.presenceFlushMs, this.log);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.mqtt.maxPayloadBytes + FRAME_OVERHEAD,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
    });
  }

  get connectedDevices(): number {
    return this.sessions.size;
  }

  get connections(): number {
    return this.openConnections;
  }

  isReady(): boolean {
    return !!this.broker && !this.broker.closed && this.accepting;
  }

  async start(): Promise<void> {
    for (const mac of await this.opts.loadMacLibrary()) this.macLibrary.set(mac, null);
    await this.opts.presenceStore.markAllOffline();
    this.unsubscribe.push(
      this.opts.events.on('mac-library.added', ({ macs }) => macs.forEach((m) => this.macLibrary.set(m, null))),
      this.opts.events.on('mac-library.removed', ({ mac }) => {
        this.macLibrary.delete(mac);
        this.disconnect(mac, 'MAC removed from the MAC library');
      }),
      this.opts.events.on('device.removed', ({ mac }) => this.disconnect(mac, 'device deleted')),
    );

    this.broker = await Aedes.createBroker({
      connectTimeout: 10_000,
      drainTimeout: 30_000,
      maxTopicLevels: MAX_TOPIC_LEVELS + 2,
      concurrency: 1000,
      heartbeatInterval: 60_000,
    });
    this.broker.authenticate = (client, username, password, done) => this.authenticate(client, username, password, done);
    this.broker.authorizePublish = (client, packet, done) => {
      if (!client) return done(null); // the service's own publishes
      const verdict = checkDevicePublish(client.id, packet.topic, packet.payload.length, this.opts.mqtt.maxPayloadBytes);
      if (!verdict.ok) {
        this.log.warn({ mac: client.id, topic: packet.topic.slice(0, 300), reason: verdict.reason }, 'publish refused; closing the session');
        return done(new Error(verdict.reason));
      }
      if (packet.topic === helloTopic(client.id)) this.onHello(client, packet.payload as Buffer);
      else {
        const jobId = commandStatusJobId(client.id, packet.topic);
        if (jobId) this.report(() => this.sink?.commandStatus(client.id, jobId, packet.payload as Buffer));
      }
      done(null);
    };
    this.broker.authorizeSubscribe = (client, sub, done) => {
      const verdict = checkDeviceSubscribe(client.id, sub.topic);
      if (!verdict.ok) {
        this.log.warn({ mac: client.id, reason: verdict.reason }, 'subscription refused');
        return done(null, null); // SUBACK 0x80 for this topic, the session stays
      }
      done(null, sub);
    };
    this.broker.authorizeForward = (client, packet) => this.forward(client, packet);
    this.broker.on('client', (client) => this.onConnected(client));
    this.broker.on('clientDisconnect', (client) => this.onDisconnected(client));
    this.broker.on('keepaliveTimeout', (client) => this.log.info({ mac: client.id }, 'keepalive expired'));
    this.broker.on('clientError', (client, err) => this.log.debug({ mac: client.id, err: err.message }, 'device connection error'));
    this.broker.on('connectionError', (client, err) => this.log.info({ mac: client.id, ip: this.addressOf(client), err: err.message }, 'connection refused'));
    this.presence.start();
  }

  private addressOf(client: Client): string {
    return this.sourceAddress.get(client.conn) ?? 'unknown';
  }

  private authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (err: AuthenticateError | null, ok: boolean | null) => void) {
    const ip = this.addressOf(client);
    const refuse = (code: number, reason: string) => {
      this.log.warn({ ip, clientId: client.id?.slice(0, 64), reason }, 'device refused');
      if (this.limiter.recordFailure(ip)) this.log.warn({ ip }, 'too many failed authentications from this address; refusing it for the rest of the minute');
      done(authError(code, reason), false);
    };
    if (this.limiter.isBlocked(ip)) return done(authError(NOT_AUTHORIZED, 'rate limited'), false);
    if (!this.accepting) return done(authError(SERVER_UNAVAILABLE, 'shutting down'), false);
    if (typeof username !== 'string' || !isCanonicalMac(username)) return refuse(BAD_USERNAME_OR_PASSWORD, 'user name is not a MAC of 12 uppercase hex digits');
    if (client.id !== username) return refuse(NOT_AUTHORIZED, 'client id differs from the user name');
    const cached = this.macLibrary.get(username);
    if (cached === undefined) return refuse(NOT_AUTHORIZED, 'MAC not in the MAC library');
    const expected = cached ?? deviceKeyBytes(this.opts.factorySecret, username);
    if (!cached) this.macLibrary.set(username, expected);
    if (!password || password.length !== expected.length || !timingSafeEqual(password, expected)) return refuse(BAD_USERNAME_OR_PASSWORD, 'wrong device key');
    // Recorded before the broker replays anything stored for the session (see forward()).
    this.sessionStart.set(client, Date.now());
    done(null, true);
  }

  private onConnected(client: Client) {
    const now = new Date();
    this.sessions.set(client.id, client);
    this.presence.mark({ mac: client.id, status: 'online', connectedAt: now, seenAt: now, ip: this.addressOf(client) });
    // Commands start after the hello, which tells whether the device was reset; a device that sends no
    // valid hello is served all the same after a grace period.
    setTimeout(() => {
      if (this.sessions.get(client.id) === client && !this.helloSeen.has(client)) this.markReady(client);
    }, HELLO_GRACE_MS).unref();
  }

  /** Engine calls run detached from the MQTT flow; their failures are logged, never thrown at a device. */
  private report(call: () => Promise<void> | undefined) {
    const pending = call();
    pending?.catch((err: unknown) => this.log.error({ err }, 'provisioning engine call failed'));
  }

  setSink(sink: DeviceEventSink) {
    this.sink = sink;
  }

  /**
   * When the device's current session began, or null while it is not connected or has not yet said hello
   * (CommandChannel for the provisioning engine: commands wait for the hello, which may reveal a reset).
   */
  connectedSince(mac: string): number | null {
    const client = this.sessions.get(mac);
    return client && this.helloSeen.has(client) ? (this.sessionStart.get(client) ?? null) : null;
  }

  private onDisconnected(client: Client) {
    // After a takeover the old session's disconnect must not mark the device offline.
    if (this.sessions.get(client.id) !== client) return;
    this.sessions.delete(client.id);
    this.presence.mark({ mac: client.id, status: 'offline', seenAt: new Date() });
  }

  private onHello(client: Client, payload: Buffer) {
    const parsed = parseHello(payload);
    if (!parsed.ok) {
      this.log.warn({ mac: client.id, reason: parsed.reason }, 'hello ignored: invalid payload');
      if (!this.helloSeen.has(client)) this.markReady(client);
      return;
    }
    const { model, firmware, ip, configHash } = parsed.hello;
    this.presence.mark({ mac: client.id, seenAt: new Date(), model, firmware, ip: ip ?? this.addressOf(client) });
    // The engine first learns what the hello says (a reset ends one-time Autop), then gets the device.
    this.report(async () => {
      await this.sink?.deviceHello(client.id, { configHash, firmware });
      this.markReady(client);
    });
  }

  /** The device may now receive commands: the engine hands it what waits. */
  private markReady(client: Client) {
    this.helloSeen.add(client);
    this.report(() => this.sink?.deviceConnected(client.id));
  }

  /** Publishes a message to a device's commands topic at QoS 1 (the narrow interface the provisioning engine uses). */
  publish(mac: string, message: object): Promise<void> {
    const payload = Buffer.from(JSON.stringify({ ...message, sentAt: Date.now() }));
    return new Promise((resolve, reject) =>
      this.broker.publish({ cmd: 'publish', topic: commandsTopic(mac), payload, qos: 1, dup: false, retain: false }, (err) => (err ? reject(err) : resolve())),
    );
  }

  /**
   * The broker keeps QoS 1 messages for a persistent session that is offline and replays them on
   * reconnect. Commands are redelivered by the provisioning engine, which knows whether they still
   * stand (a canceled job, a reset device), so a command sent before the current session began is dropped.
   */
  private forward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    if (packet.topic !== commandsTopic(client.id)) return packet;
    let sentAt = 0;
    try {
      sentAt = Number((JSON.parse((packet.payload as Buffer).toString('utf8')) as { sentAt?: unknown }).sentAt) || 0;
    } catch {
      return packet;
    }
    const since = this.sessionStart.get(client);
    return since !== undefined && sentAt < since ? null : packet;
  }

  /** Closes a device's current session, if any. */
  disconnect(mac: string, reason: string) {
    const client = this.sessions.get(mac);
    if (!client) return;
    this.log.info({ mac, reason }, 'closing device session');
    client.close();
  }

  /** Hands one transport connection to the broker, or refuses it when the gateway is at its cap. */
  private attach(stream: Duplex, address: string, req?: IncomingMessage): boolean {
    if (!this.accepting || this.openConnections >= this.opts.mqtt.maxConnections) {
      if (this.accepting) this.log.warn({ ip: address, max: this.opts.mqtt.maxConnections }, 'connection refused: gateway at its connection maximum');
      stream.end(CONNACK_SERVER_UNAVAILABLE);
      setTimeout(() => stream.destroy(), 1000).unref();
      return false;
    }
    this.openConnections++;
    stream.once('close', () => this.openConnections--);
    this.sourceAddress.set(stream, address);
    guardFrames(stream, this.opts.mqtt.maxPayloadBytes + FRAME_OVERHEAD, (declared) =>
      this.log.warn({ ip: address, declaredBytes: declared }, 'packet over the size limit; connection closed'),
    );
    this.broker.handle(stream, req);
    return true;
  }

  private onSocket = (socket: net.Socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => {}); // resets during storms are routine; the broker logs session errors
    this.attach(socket, socket.remoteAddress ?? 'unknown');
  };

  async listen(): Promise<ListeningPorts> {
    const { host, port, portExplicit, tls: tlsConfig } = this.opts.mqtt;
    const tcp = net.createServer(this.onSocket);
    this.servers.push(tcp);
    let mqttPort: number;
    try {
      mqttPort = await listenOn(tcp, host, port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || portExplicit) {
        throw new Error(`MQTT port ${port} on ${host} is not available: ${(err as Error).message}`);
      }
      this.log.warn({ port }, `MQTT port ${port} is taken (another MQTT broker runs there); listening on a free port instead. Set MQTT_PORT to choose one.`);
      mqttPort = await listenOn(tcp, host, 0);
    }
    let mqttsPort: number | null = null;
    if (tlsConfig) {
      const server = tls.createServer({ cert: readFileSync(tlsConfig.certFile), key: readFileSync(tlsConfig.keyFile) }, this.onSocket);
      this.servers.push(server);
      mqttsPort = await listenOn(server, host, tlsConfig.port);
    }
    return { mqtt: mqttPort, mqtts: mqttsPort };
  }

  /** MQTT over WebSocket at /mqtt on the HTTP port. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const address = req.socket.remoteAddress ?? 'unknown';
    if (!this.accepting || this.openConnections >= this.opts.mqtt.maxConnections) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => {});
      this.attach(stream, address, req);
    });
  }

  /** Stops accepting, closes every device session cleanly and writes the last presence. */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.accepting = false;
    for (const off of this.unsubscribe) off();
    // close() stops accepting at once but calls back only when every connection has ended.
    const listenersClosed = Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    const sessionsClosed = Promise.all([...this.sessions.values()].map((c) => new Promise<void>((resolve) => c.close(() => resolve()))));
    await Promise.race([Promise.all([listenersClosed, sessionsClosed]), new Promise((r) => setTimeout(r, 5000).unref())]);
    if (this.broker) await new Promise<void>((resolve) => this.broker.close(() => resolve()));
    this.wss.close();
    this.limiter.close();
    await this.presence.stop();
  }

  /** Flushes pending presence now (used by shutdown and tests that need the database current). */
  flushPresence(): Promise<void> {
    return this.presence.flush();
  }
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
