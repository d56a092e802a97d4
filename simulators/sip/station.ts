import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import {
  EmitterImpl,
  Invitation,
  Inviter,
  Registerer,
  RegistererState,
  SessionState,
  TransportState,
  UserAgent,
  type Info,
  type Session,
  type SessionDescriptionHandler,
  type Transport,
} from 'sip.js';
import WebSocket from 'ws';

export type SipTransport = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';

export interface SipStationOptions {
  /** SIP user (account number), also the auth username. */
  number: string;
  password: string;
  /** Digest user name when it differs from `number` (only a misbehaving station does that). */
  authUsername?: string;
  /** SIP domain/realm used in the AOR sip:number@domain. */
  domain: string;
  /** For ws/wss the URL is ws(s)://host:port{wsPath ?? '/'}. */
  server: { host: string; port: number; transport: SipTransport; ca?: Buffer; wsPath?: string };
  /** Loopback source address (e.g. 127.0.0.2). */
  localAddress?: string;
  /** REGISTER expiry, default 300. */
  expiresSeconds?: number;
  displayName?: string;
  /** Debug output; never gets the password. */
  logger?: (line: string) => void;
}

export interface IncomingCall {
  callId: string;
  /** Caller user part. */
  from: string;
  /** Dialled user part. */
  to: string;
  accept(): Promise<void>;
  reject(code?: number): Promise<void>;
  /** Send 180 Ringing. */
  ring(): Promise<void>;
}

export interface CallEnd {
  by: 'local' | 'remote';
}

export interface ActiveCall {
  callId: string;
  remote: string;
  hangup(): Promise<void>;
  /** One SIP INFO (application/dtmf-relay) per digit. */
  sendDtmf(digits: string): Promise<void>;
  ended: Promise<CallEnd>;
}

export interface DtmfEvent {
  callId: string;
  digit: string;
  from: string;
}

/** A SIP request that ended in a final non-2xx response (or never got one). */
class SipRequestError extends Error {
  constructor(
    readonly status: number,
    reason: string,
  ) {
    super(`SIP ${status} ${reason}`);
    this.name = 'SipRequestError';
  }
}

/**
 * A simulated SIP phone (door station, indoor monitor, app) on sip.js, signalling only:
 * the SDP is a static offer/answer and no RTP is ever sent.
 *
 * Events: 'incoming' (IncomingCall), 'ringing' (callId), 'answered' (ActiveCall), 'dtmf' (DtmfEvent),
 * 'ended' ({ callId, by }), 'registered', 'unregistered'.
 */
export class SipStation extends EventEmitter {
  /** When set, incoming calls get 180 and then 200 after ringMs. */
  autoAnswer: false | { ringMs: number } = false;

  private readonly opts: SipStationOptions;
  private ua: UserAgent | undefined;
  private registerer: Registerer | undefined;
  private stopping = false;
  /** The other party of each call in progress, by Call-ID. */
  private readonly parties = new Map<string, () => string>();

  /** The SIP number at the other end of a call in progress (for a placed call: who answered). */
  remoteParty(callId: string): string | undefined {
    return this.parties.get(callId)?.();
  }

  constructor(opts: SipStationOptions) {
    super();
    this.opts = opts;
  }

  async start(): Promise<void> {
    const { number, domain, server } = this.opts;
    const link = await openLink(server, this.opts.localAddress);
    const uri = UserAgent.makeURI(`sip:${number}@${domain}`);
    if (!uri) throw new Error(`invalid SIP address sip:${number}@${domain}`);
    const log = this.opts.logger;
    this.ua = new UserAgent({
      uri,
      displayName: this.opts.displayName,
      // A different authentication user than the address is what a station impersonating another does (tests).
      authorizationUsername: this.opts.authUsername ?? number,
      authorizationPassword: this.opts.password,
      contactName: number,
      contactParams: { transport: server.transport },
      viaHost: link.local.address,
      // sip.js drops responses whose Via carries a port, so Via has none and rport brings UDP replies back to our port.
      forceRport: true,
      transportConstructor: LinkTransport,
      transportOptions: {
        link,
        protocol: server.transport.toUpperCase(),
        trace: log && ((line: string) => log(`${number} ${line}`)),
      } satisfies LinkTransportOptions,
      sessionDescriptionHandlerFactory: () => staticSdp(this.opts.localAddress ?? '127.0.0.1'),
      // Otherwise sip.js sends 180 on its own before we see the INVITE; ringing is the station's decision.
      sendInitialProvisionalResponse: false,
      logConfiguration: false,
      logBuiltinEnabled: false,
      logLevel: log ? 'debug' : 'error',
      logConnector: (level, category, _label, content) => log?.(`${number} ${level} ${category} ${content}`),
      delegate: { onInvite: (invitation) => this.onInvite(invitation) },
    });
    // sip.js builds the Contact from viaHost without a port; the server must reach us on the socket we hold.
    this.ua.contact.uri.port = link.local.port;
    await this.ua.start();
  }

  async register(): Promise<{ status: number }> {
    const ua = this.requireStarted();
    if (!this.registerer) {
      const registerer = new Registerer(ua, { expires: this.opts.expiresSeconds ?? 300 });
      let wasRegistered = false;
      registerer.stateChange.addListener((state) => {
        if (state === RegistererState.Registered) {
          wasRegistered = true;
          this.emit('registered');
        } else if (wasRegistered) {
          wasRegistered = false;
          this.emit('unregistered');
        }
      });
      this.registerer = registerer;
    }
    const registerer = this.registerer;
    // Digest challenges are answered inside sip.js; a second 401/403 arrives here as the final status.
    return new Promise((resolve, reject) => {
      registerer
        .register({
          requestDelegate: {
            onAccept: (response) => resolve({ status: response.message.statusCode ?? 0 }),
            onReject: (response) => resolve({ status: response.message.statusCode ?? 0 }),
          },
        })
        .catch(reject);
    });
  }

  async unregister(): Promise<void> {
    const registerer = this.registerer;
    if (registerer?.state !== RegistererState.Registered) return;
    await new Promise<void>((resolve, reject) => {
      registerer
        .unregister({ requestDelegate: { onAccept: () => resolve(), onReject: () => resolve() } })
        .catch(reject);
    });
  }

  async call(target: string, opts: { timeoutMs?: number } = {}): Promise<ActiveCall> {
    const ua = this.requireStarted();
    const uri = UserAgent.makeURI(`sip:${target}@${this.opts.domain}`);
    if (!uri) throw new Error(`invalid SIP target ${target}`);
    const inviter = new Inviter(ua, uri);
    const { call, assert } = this.track(inviter, inviter.request.callId, target, false);
    return new Promise((resolve, reject) => {
      const timer =
        opts.timeoutMs === undefined ? undefined : setTimeout(() => void inviter.cancel().catch(() => {}), opts.timeoutMs);
      const settle = (error?: Error): void => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(call);
      };
      inviter
        .invite({
          requestDelegate: {
            // Called after sip.js applied the answer, so the session is already Established (or torn down).
            onAccept: (response) => {
              assert(assertedUser(response.message.getHeader('P-Asserted-Identity')));
              settle(inviter.state === SessionState.Established ? undefined : new Error('call failed after answer'));
            },
            onReject: (response) => settle(requestError(response.message)),
          },
        })
        .catch((error: Error) => settle(error));
    });
  }

  async stop(): Promise<void> {
    const ua = this.ua;
    if (!ua) return;
    this.stopping = true;
    await this.unregister();
    await ua.stop();
    this.ua = undefined;
    this.registerer = undefined;
    this.stopping = false;
  }

  private onInvite(invitation: Invitation): void {
    const callId = invitation.request.callId;
    const from = invitation.remoteIdentity.uri.user ?? '';
    // The proxy rewrote the Request-URI to our contact; To still names the number that was dialled.
    const to = invitation.request.to.uri.user ?? '';
    const { endingLocally, assert } = this.track(invitation, callId, from, true);
    assert(assertedUser(invitation.request.getHeader('P-Asserted-Identity')));
    const incoming: IncomingCall = {
      callId,
      from,
      to,
      ring: async () => {
        await invitation.progress();
        this.emit('ringing', callId);
      },
      accept: () => invitation.accept(),
      reject: (code = 486) => {
        endingLocally();
        return invitation.reject({ statusCode: code });
      },
    };
    this.emit('incoming', incoming);
    if (this.autoAnswer) {
      const { ringMs } = this.autoAnswer;
      incoming
        .ring()
        .then(() => new Promise((resolve) => setTimeout(resolve, ringMs)))
        // The caller may have cancelled while we were ringing.
        .then(() => (invitation.state === SessionState.Initial ? incoming.accept() : undefined))
        .catch((error: Error) => this.opts.logger?.(`${this.opts.number} auto-answer failed: ${error.message}`));
    }
  }

  /** Wires a session's events to the station and gives the handle callers use once it is up. */
  private track(
    session: Session,
    callId: string,
    remote: string,
    incoming: boolean,
  ): { call: ActiveCall; endingLocally: () => void; assert: (user: string | undefined) => void } {
    let endedBy: CallEnd['by'] = 'remote';
    let established = false;
    let markEnded: (end: CallEnd) => void = () => {};
    const ended = new Promise<CallEnd>((resolve) => (markEnded = resolve));
    // The other party's identity (docs/device-protocol.md, "Events"): the P-Asserted-Identity the server put
    // on the INVITE or its 200 when there is one; otherwise, for a call this station placed, the station
    // that answered (the dialog's remote target, its Contact user), not the number dialled (an apartment
    // number rings several stations), and for a call it received, the From user.
    let asserted: string | undefined;
    const party = () => asserted ?? (incoming ? remote : (session.dialog?.remoteTarget.user ?? remote));
    this.parties.set(callId, party);
    void ended.then(() => this.parties.delete(callId));
    const call: ActiveCall = {
      callId,
      get remote() {
        return party();
      },
      ended,
      hangup: async () => {
        if (session.state !== SessionState.Established) return;
        endedBy = 'local';
        await session.bye();
        await ended;
      },
      sendDtmf: async (digits) => {
        for (const digit of digits) {
          if (!/^[0-9*#A-D]$/i.test(digit)) throw new Error(`not a DTMF digit: ${digit}`);
          await sendInfo(session, `Signal=${digit}\r\nDuration=160`);
        }
      },
    };
    session.delegate = {
      onInfo: (info) => this.onInfo(info, callId, party()),
    };
    session.stateChange.addListener((state) => {
      if (state === SessionState.Established) {
        established = true;
        this.emit('answered', call);
      } else if (state === SessionState.Terminated) {
        const by = this.stopping ? 'local' : endedBy;
        markEnded({ by });
        // Outgoing calls that never got answered are reported through call() rejecting instead.
        if (established || incoming) this.emit('ended', { callId, by });
      }
    });
    return { call, endingLocally: () => (endedBy = 'local'), assert: (user) => (asserted = user ?? asserted) };
  }

  private onInfo(info: Info, callId: string, from: string): void {
    info.accept().catch((error: Error) => this.opts.logger?.(`${this.opts.number} INFO answer failed: ${error.message}`));
    const contentType = info.request.getHeader('content-type') ?? '';
    const digit = /^\s*signal\s*=\s*(\S)/im.exec(info.request.body)?.[1];
    // An INFO the server asserted the sender of names it; otherwise the call's other party sent it.
    const sender = assertedUser(info.request.getHeader('P-Asserted-Identity')) ?? from;
    if (/application\/dtmf-relay/i.test(contentType) && digit) this.emit('dtmf', { callId, digit, from: sender });
  }

  private requireStarted(): UserAgent {
    if (!this.ua) throw new Error('SipStation not started');
    return this.ua;
  }
}

const requestError = (response: { statusCode?: number; reasonPhrase?: string }): SipRequestError =>
  new SipRequestError(response.statusCode ?? 0, response.reasonPhrase ?? '');

/** The user of a P-Asserted-Identity (`<sip:5926100012@domain>`, with or without a display name), when it is a number. */
export function assertedUser(header: string | undefined): string | undefined {
  const user = header && /sips?:([^@;>\s]+)@/i.exec(header)?.[1];
  return user && /^[0-9]{1,32}$/.test(user) ? user : undefined;
}

/** Sends one INFO and waits for its final response. */
function sendInfo(session: Session, content: string): Promise<void> {
  return new Promise((resolve, reject) => {
    session
      .info({
        requestDelegate: {
          onAccept: () => resolve(),
          onReject: (response) => reject(requestError(response.message)),
        },
        requestOptions: {
          body: { contentDisposition: 'render', contentType: 'application/dtmf-relay', content },
        },
      })
      .catch(reject);
  });
}

/** A fixed audio offer/answer: enough for proxies and phones to accept the call, while no media ever flows. */
function staticSdp(address: string): SessionDescriptionHandler {
  const sessionId = Math.floor(Math.random() * 1e9);
  const sdp = [
    'v=0',
    `o=- ${sessionId} 1 IN IP4 ${address}`,
    's=-',
    `c=IN IP4 ${address}`,
    't=0 0',
    'm=audio 9 RTP/AVP 0 101',
    'a=rtpmap:0 PCMU/8000',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-15',
    'a=sendrecv',
    '',
  ].join('\r\n');
  return {
    getDescription: async () => ({ body: sdp, contentType: 'application/sdp' }),
    setDescription: async () => {},
    hasDescription: (contentType) => contentType === 'application/sdp',
    // DTMF goes out as SIP INFO, never in-band.
    sendDtmf: () => false,
    close: () => {},
  };
}

/** An open socket to the SIP server that carries whole SIP messages either way. */
interface SipLink {
  readonly local: { address: string; port: number };
  send(message: string): Promise<void>;
  close(): Promise<void>;
  onMessage: (message: string) => void;
  onClose: (error?: Error) => void;
}

function openLink(server: SipStationOptions['server'], localAddress: string | undefined): Promise<SipLink> {
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

async function openUdp(server: SipStationOptions['server'], localAddress: string | undefined): Promise<SipLink> {
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

async function openStream(server: SipStationOptions['server'], localAddress: string | undefined): Promise<SipLink> {
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

async function openWebSocket(server: SipStationOptions['server'], localAddress: string | undefined): Promise<SipLink> {
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

interface LinkTransportOptions {
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
class LinkTransport implements Transport {
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
