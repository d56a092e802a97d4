import dgram from 'node:dgram';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { EmitterImpl, TransportState, type Transport } from 'sip.js';
import WebSocket from 'ws';

// The station's connection to the SIP server (station.ts): one socket per transport carrying whole SIP
// messages, and the sip.js Transport over it.

export type SipTransport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

/** Where the SIP server is; for ws/wss the URL is ws(s)://host:port{wsPath ?? '/'}. */
export interface SipServerAddress {
  host: string;
  port: number;
  transport: SipTransport;
  ca?: Buffer;
  wsPath?: string;
}

/** An open socket to the SIP server that carries whole SIP messages either way. */
interface SipLink {
  readonly local: { address: string; port: number };
  send(message: string): Promise<void>;
  close(): Promise<void>;
  onMessage: (message: string) => void;
  onClose: (error?: Error) => void;
}

export function openLink(server: SipServerAddress, localAddress: string | undefined): Promise<SipLink> {
  switch (server.transport) {
    case 'udp':
      return openUdp(server, localAddress);
    case 'tcp':
    case 'tls':
      return openStream(server, localAddress);
    case 'ws':
    case 'wss':
      return openWebSocket(server, localAddress);
  }
}

function newLink(local: SipLink['local'], send: SipLink['send'], close: SipLink['close']): SipLink {
  return { local, send, close, onMessage: () => {}, onClose: () => {} };
}

/** A bare CRLF keepalive (ping "\r\n\r\n" or pong "\r\n") carries no SIP message. */
const isKeepalive = (text: string): boolean => text.trim() === '';

async function openUdp(server: SipServerAddress, localAddress: string | undefined): Promise<SipLink> {
  const socket = dgram.createSocket(net.isIPv6(localAddress ?? server.host) ? 'udp6' : 'udp4');
  socket.bind(0, localAddress);
  await once(socket, 'listening');
  // Connecting fixes the peer, so address() shows the source address the kernel picked for Via/Contact.
  socket.connect(server.port, server.host);
  await once(socket, 'connect');
  const { address, port } = socket.address();
  const link = newLink(
    { address, port },
    (message) => new Promise((resolve, reject) => socket.send(message, (error) => (error ? reject(error) : resolve()))),
    () => new Promise((resolve) => socket.close(() => resolve())),
  );
  socket.on('message', (datagram) => {
    const text = datagram.toString('utf8');
    if (!isKeepalive(text)) link.onMessage(text);
  });
  socket.on('error', (error) => link.onClose(error));
  return link;
}

async function openStream(server: SipServerAddress, localAddress: string | undefined): Promise<SipLink> {
  let socket: net.Socket = net.connect({ host: server.host, port: server.port, localAddress });
  await once(socket, 'connect');
  if (server.transport === 'tls') {
    // tls.connect cannot pick a source address itself, so TLS runs over the TCP socket opened above.
    socket = tls.connect({ socket, host: server.host, ca: server.ca, servername: net.isIP(server.host) ? undefined : server.host });
    await once(socket, 'secureConnect');
  }
  const link = newLink(
    { address: socket.localAddress ?? '', port: socket.localPort ?? 0 },
    (message) => new Promise((resolve, reject) => socket.write(message, (error) => (error ? reject(error) : resolve()))),
    async () => {
      if (socket.destroyed) return;
      socket.end();
      await once(socket, 'close');
    },
  );
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      const [message, rest] = takeStreamMessage(pending);
      pending = rest;
      if (message === undefined) break;
      link.onMessage(message);
    }
  });
  socket.on('error', (error) => link.onClose(error));
  socket.on('close', () => link.onClose());
  return link;
}

/**
 * Cuts the first complete SIP message off a stream buffer, framed by Content-Length
 * (a TCP read may hold half a message or several); leading CRLF keepalives are dropped.
 */
export function takeStreamMessage(buffer: Buffer): [string | undefined, Buffer] {
  let start = 0;
  while (buffer[start] === 0x0d || buffer[start] === 0x0a) start++;
  const headerEnd = buffer.indexOf('\r\n\r\n', start);
  if (headerEnd < 0) return [undefined, buffer.subarray(start)];
  const head = buffer.toString('utf8', start, headerEnd);
  const length = Number(/^(?:content-length|l)[ \t]*:[ \t]*(\d+)/im.exec(head)?.[1] ?? 0);
  const end = headerEnd + 4 + length;
  if (buffer.length < end) return [undefined, buffer.subarray(start)];
  return [buffer.toString('utf8', start, end), buffer.subarray(end)];
}

async function openWebSocket(server: SipServerAddress, localAddress: string | undefined): Promise<SipLink> {
  const scheme = server.transport === 'wss' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${server.host}:${server.port}${server.wsPath ?? '/'}`, 'sip', {
    ca: server.ca,
    localAddress,
  });
  // ws keeps its socket private; the upgrade response exposes it, and with it our address for Via/Contact.
  const local = { address: '', port: 0 };
  ws.once('upgrade', (response: IncomingMessage) => {
    local.address = response.socket.localAddress ?? '';
    local.port = response.socket.localPort ?? 0;
  });
  await once(ws, 'open');
  const link = newLink(
    local,
    (message) => new Promise((resolve, reject) => ws.send(message, (error) => (error ? reject(error) : resolve()))),
    async () => {
      if (ws.readyState === WebSocket.CLOSED) return;
      ws.close();
      await once(ws, 'close');
    },
  );
  ws.on('message', (data: Buffer) => {
    const text = data.toString('utf8');
    if (!isKeepalive(text)) link.onMessage(text);
  });
  ws.on('error', (error) => link.onClose(error));
  ws.on('close', () => link.onClose());
  return link;
}

export interface LinkTransportOptions {
  link: SipLink;
  /** Goes into the Via header: UDP, TCP, TLS, WS or WSS. */
  protocol: string;
  /** Start lines of messages in (<<) and out (>>); headers stay out because they carry digest credentials. */
  trace: ((line: string) => void) | undefined;
}

const firstLine = (message: string): string => message.slice(0, message.indexOf('\r\n'));

/**
 * sip.js Transport over a link the station opened before creating the UserAgent
 * (the UserAgent needs the local address for Via/Contact at construction).
 */
export class LinkTransport implements Transport {
  readonly protocol: string;
  readonly stateChange = new EmitterImpl<TransportState>();
  state: TransportState = TransportState.Disconnected;
  onConnect: (() => void) | undefined;
  onDisconnect: ((error?: Error) => void) | undefined;
  onMessage: ((message: string) => void) | undefined;
  private readonly link: SipLink;
  private readonly trace: ((line: string) => void) | undefined;

  constructor(_logger: unknown, options: LinkTransportOptions) {
    this.link = options.link;
    this.protocol = options.protocol;
    this.trace = options.trace;
    this.link.onMessage = (message) => {
      this.trace?.(`<< ${firstLine(message)}`);
      this.onMessage?.(message);
    };
    this.link.onClose = (error) => {
      // Our own disconnect() reports the close itself.
      if (this.state !== TransportState.Connected) return;
      this.setState(TransportState.Disconnected);
      this.onDisconnect?.(error);
    };
  }

  async connect(): Promise<void> {
    this.setState(TransportState.Connected);
    this.onConnect?.();
  }

  async disconnect(): Promise<void> {
    if (this.state === TransportState.Disconnected) return;
    this.setState(TransportState.Disconnecting);
    await this.link.close();
    this.setState(TransportState.Disconnected);
    this.onDisconnect?.();
  }

  dispose(): Promise<void> {
    return this.disconnect();
  }

  isConnected(): boolean {
    return this.state === TransportState.Connected;
  }

  send(message: string): Promise<void> {
    if (!this.isConnected()) return Promise.reject(new Error('SIP transport not connected'));
    this.trace?.(`>> ${firstLine(message)}`);
    return this.link.send(message);
  }

  private setState(state: TransportState): void {
    this.state = state;
    this.stateChange.emit(state);
  }
}
