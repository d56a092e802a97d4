import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Config } from '../config.js';
import { capPerAddress, refusalLog } from '../infra/connection-caps.js';
import type { Logger } from '../logger.js';
import { guardFrames } from './frame-guard.js';

/** A CONNACK with "server unavailable", written to connections over the cap before they are closed. */
const CONNACK_SERVER_UNAVAILABLE = Buffer.from([0x20, 0x02, 0x00, 0x03]);
/** Connections being refused at once (CONNACK 3 on its way) beyond which more are closed without one. */
const MAX_REFUSING = 1000;
/** A TLS handshake must be done within this (the CONNECT after it has MQTT_CONNECT_TIMEOUT_MS from accept). */
const TLS_HANDSHAKE_MS = 10_000;
/** Room for the topic and headers on top of the largest accepted payload. */
const FRAME_OVERHEAD = 1024;

export interface ListeningPorts {
  mqtt: number;
  mqtts: number | null;
}

export interface TransportOptions {
  mqtt: Config['mqtt'];
  /** Hands an accepted connection to the broker. */
  handle: (stream: Duplex, req?: IncomingMessage) => void;
  log: Logger;
}

/**
 * The ways devices reach the broker (MQTT over TCP, TLS and WebSocket) and what every connection passes
 * first: the connection maximum (CONNACK 3 above it, never a crash at the open-file limit) and the
 * frame-length guard. Remembers each connection's source address for authentication and presence.
 */
export class Transports {
  private readonly servers: net.Server[] = [];
  private readonly wss: WebSocketServer;
  private readonly sourceAddress = new WeakMap<object, string>();
  private open = 0;
  private refusing = 0;
  private accepting = true;

  constructor(private readonly opts: TransportOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: opts.mqtt.maxPayloadBytes + FRAME_OVERHEAD,
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : false),
    });
  }

  get connections(): number {
    return this.open;
  }

  /** The source address of a connection the broker holds (its `conn`). */
  addressOf(conn: object): string {
    return this.sourceAddress.get(conn) ?? 'unknown';
  }

  private full(): boolean {
    return !this.accepting || this.open >= this.opts.mqtt.maxConnections;
  }

  private attach(stream: Duplex, address: string, req?: IncomingMessage): void {
    if (this.full()) {
      // A refused connection is an open file until it is gone: it goes as soon as its CONNACK is written
      // (at most a second later), and beyond a thousand being refused at once, at once without one, so
      // that devices retrying above the maximum never take the process to its open-file limit.
      if (this.refusing >= MAX_REFUSING) {
        stream.destroy();
        return;
      }
      if (this.accepting) this.opts.log.warn({ ip: address, max: this.opts.mqtt.maxConnections }, 'connection refused: gateway at its connection maximum');
      this.refusing++;
      stream.once('close', () => this.refusing--);
      stream.end(CONNACK_SERVER_UNAVAILABLE, () => stream.destroy());
      setTimeout(() => stream.destroy(), 1000).unref();
      return;
    }
    this.open++;
    stream.on('close', this.connectionClosed);
    this.sourceAddress.set(stream, address);
    guardFrames(stream, this.opts.mqtt.maxPayloadBytes + FRAME_OVERHEAD, this.oversized);
    this.opts.handle(stream, req);
  }

  // Shared by every connection (a closure each would cost every held session).
  private readonly connectionClosed = () => void this.open--;
  private readonly oversized = (stream: Duplex, declared: number) => this.opts.log.warn({ ip: this.addressOf(stream), declaredBytes: declared }, 'packet over the size limit; connection closed');

  private onSocket = (socket: net.Socket) => {
    socket.setNoDelay(true);
    socket.on('error', ignore); // resets during storms are routine; the broker logs session errors
    this.attach(socket, socket.remoteAddress ?? 'unknown');
  };

  async listen(): Promise<ListeningPorts> {
    const { host, port, portExplicit, tls: tlsConfig } = this.opts.mqtt;
    acceptErrorLogger = (err) => this.opts.log.error({ err: err.message, code: err.code }, 'accepting a connection failed (open-file limit?); still listening');
    const tcp = net.createServer(this.onSocket);
    this.limit(tcp, 'mqtt');
    this.servers.push(tcp);
    let mqttPort: number;
    try {
      mqttPort = await listenOn(tcp, host, port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || portExplicit) {
        throw new Error(`MQTT port ${port} on ${host} is not available: ${(err as Error).message}`);
      }
      this.opts.log.warn({ port }, `MQTT port ${port} is taken (another MQTT broker runs there); listening on a free port instead. Set MQTT_PORT to choose one.`);
      mqttPort = await listenOn(tcp, host, 0);
    }
    let mqttsPort: number | null = null;
    if (tlsConfig) {
      const server = tls.createServer({ cert: readFileSync(tlsConfig.certFile), key: readFileSync(tlsConfig.keyFile), handshakeTimeout: TLS_HANDSHAKE_MS }, this.onSocket);
      // Node reports a late handshake but leaves its socket open: close it (bad handshakes end anyway).
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      this.limit(server, 'mqtts');
      this.servers.push(server);
      mqttsPort = await listenOn(server, host, tlsConfig.port);
    }
    return { mqtt: mqttPort, mqtts: mqttsPort };
  }

  /**
   * Caps a listener at the TCP level, before TLS and before any MQTT: one source (address, IPv6 /64)
   * holds at most its share, and beyond the maximum and the refusals in flight a connection is closed at
   * accept. Until its TLS handshake ends a connection is not the broker's, so only this bounds them.
   */
  private limit(server: net.Server, listener: string): void {
    const { maxConnections, maxConnectionsPerAddress, proxies } = this.opts.mqtt;
    const log = refusalLog(this.opts.log, listener);
    server.maxConnections = maxConnections + MAX_REFUSING;
    server.on('drop', (data?: { remoteAddress?: string }) => log(data?.remoteAddress ?? 'unknown', 'total'));
    capPerAddress(server, maxConnectionsPerAddress, proxies, (address) => log(address, 'address'));
  }

  /** MQTT over WebSocket at /mqtt on the HTTP port. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const address = req.socket.remoteAddress ?? 'unknown';
    if (this.full()) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', ignore);
      this.attach(stream, address, req);
    });
  }

  /** Stops accepting; resolves when the listeners have closed (every connection on them has ended). */
  close(): Promise<void> {
    this.accepting = false;
    this.wss.close();
    return Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
  }
}

const ignore = () => {};

let lastAcceptErrorLog = 0;
let acceptErrorLogger: ((err: NodeJS.ErrnoException) => void) | null = null;
/** Logs a failed accept at most once a second. */
function onAcceptError(err: NodeJS.ErrnoException) {
  if (Date.now() - lastAcceptErrorLog < 1000) return;
  lastAcceptErrorLog = Date.now();
  acceptErrorLogger?.(err);
}

function listenOn(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', onError);
      // Once listening, an error is a failed accept (EMFILE at the open-file limit): the listener goes on
      // accepting once files are free; without this handler the process would die of it.
      server.on('error', (err: NodeJS.ErrnoException) => onAcceptError(err));
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
