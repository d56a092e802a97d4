import { EventEmitter } from 'node:events';
import { SipStation, type ActiveCall, type CallEnd, type DtmfEvent, type IncomingCall } from './sip/station.js';

/** A SIP server as the registration answer lists it. */
export interface AppSipServer {
  transport: 'udp' | 'tcp' | 'tls' | 'ws' | 'wss';
  host: string;
  port: number;
  url?: string;
}

/** The answer to `POST /api/v1/app-registrations/{code}` (src/calls/schemas.ts `exchangeSchema`). */
export interface AppRegistration {
  station: { id: string; name: string; sipNumber: string; apartmentId: string; siteId: string };
  sip: { username: string; password: string; domain: string | null; servers: AppSipServer[] };
  addressBook: { sipNumber: string; name: string; type: 'door-phone' | 'guard-phone' | 'indoor-monitor'; location: string | null; doorRelease: boolean }[];
}

export interface AppStationOptions {
  /** The station's name (the service's default is "App n"). */
  name?: string;
  /** Which WebSocket server to use; default the first ws/wss server listed (the service lists wss first when it has TLS). */
  transport?: 'ws' | 'wss';
  /** CA to trust for wss (a deployment's own certificate). */
  ca?: Buffer;
  /** Source address of the SIP connection. */
  localAddress?: string;
  /** Answer every incoming call after ringing this long. */
  autoAnswer?: { ringMs: number };
  /** SIP start lines and sip.js debug output; never gets the password. */
  logger?: (line: string) => void;
}

/** Where the registration code comes from: the URL (what the QR code holds) or the code and the API's base URL. */
export type RegistrationSource = string | { registrationUrl: string } | { code: string; baseUrl: string } | { qr: { text: string } };

/** An HTTP error of the registration exchange, with the service's error body. */
class AppRegistrationError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`app registration refused: ${status} ${JSON.stringify(body)}`);
    this.name = 'AppRegistrationError';
  }
}

/** The registration URL a source names. The QR code's text is the registration URL itself. */
function registrationUrlOf(source: RegistrationSource): string {
  if (typeof source === 'string') return source;
  if ('registrationUrl' in source) return source.registrationUrl;
  if ('qr' in source) return source.qr.text;
  return `${source.baseUrl.replace(/\/+$/, '')}/api/v1/app-registrations/${encodeURIComponent(source.code)}`;
}

/**
 * A simulated resident app: redeems a one-time registration code (as scanning the QR code does), then
 * registers its SIP account over WebSocket and takes calls from the apartment's door phones.
 *
 * Events: 'registered' ({ status, transport }), 'incoming' (IncomingCall), 'answered' (ActiveCall),
 * 'dtmf' (DtmfEvent), 'ended' ({ callId, by }), 'unregistered', 'sip-error' (Error).
 */
export class AppStationSimulator extends EventEmitter {
  /** The call up now (the last one answered or placed). */
  currentCall: ActiveCall | null = null;
  /** Calls ringing here that nobody answered yet, by Call-ID. */
  readonly ringing = new Map<string, IncomingCall>();
  private answerNext: ((call: ActiveCall) => void) | null = null;
  /** Call-IDs of calls this station received (an answer to one of them settles answerNextCall). */
  private readonly received = new Set<string>();

  private constructor(
    readonly registration: AppRegistration,
    readonly sipStation: SipStation,
    readonly server: AppSipServer,
  ) {
    super();
  }

  get station(): AppRegistration['station'] {
    return this.registration.station;
  }

  get addressBook(): AppRegistration['addressBook'] {
    return this.registration.addressBook;
  }

  get sipNumber(): string {
    return this.registration.sip.username;
  }

  /** Redeems the code at its registration URL (no token) and answers the service's answer as is. */
  static async redeem(source: RegistrationSource, opts: { name?: string } = {}): Promise<AppRegistration> {
    const res = await fetch(registrationUrlOf(source), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(opts.name ? { name: opts.name } : {}),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON */
    }
    if (res.status !== 201 && res.status !== 200) throw new AppRegistrationError(res.status, body);
    return body as AppRegistration;
  }

  /** Redeems the code, then starts a SIP station over the WebSocket server it was given and registers. */
  static async register(source: RegistrationSource, opts: AppStationOptions = {}): Promise<AppStationSimulator> {
    const registration = await AppStationSimulator.redeem(source, opts);
    return AppStationSimulator.fromRegistration(registration, opts);
  }

  /** Starts the SIP station of a registration already redeemed, and registers. */
  static async fromRegistration(registration: AppRegistration, opts: AppStationOptions = {}): Promise<AppStationSimulator> {
    const { sip } = registration;
    const server = sip.servers.find((s) => (opts.transport ? s.transport === opts.transport : s.transport === 'ws' || s.transport === 'wss'));
    if (!server || !sip.domain) throw new Error(`the registration names no ${opts.transport ?? 'WebSocket'} SIP server (is SIP off?): ${JSON.stringify(sip.servers)}`);
    const wsPath = server.url ? new URL(server.url).pathname : undefined;
    const station = new SipStation({
      number: sip.username,
      password: sip.password,
      domain: sip.domain,
      server: { host: server.host, port: server.port, transport: server.transport, ...(opts.ca ? { ca: opts.ca } : {}), ...(wsPath ? { wsPath } : {}) },
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      displayName: registration.station.name,
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
    const app = new AppStationSimulator(registration, station, server);
    app.wire();
    if (opts.autoAnswer) station.autoAnswer = opts.autoAnswer;
    await station.start();
    const { status } = await station.register();
    app.emit('registered', { status, transport: server.transport });
    if (status !== 200) {
      await station.stop().catch(() => {});
      throw new Error(`the app's SIP account was refused: ${status}`);
    }
    return app;
  }

  /** Answers calls after ringing `ringMs` (false: ring until answered). */
  set autoAnswer(value: false | { ringMs: number }) {
    this.sipStation.autoAnswer = value;
  }

  get autoAnswer(): false | { ringMs: number } {
    return this.sipStation.autoAnswer;
  }

  /** Answers the next call that rings (or one ringing now) and resolves once it is up. */
  answerNextCall(): Promise<ActiveCall> {
    return new Promise<ActiveCall>((resolve, reject) => {
      const waiting = this.ringing.values().next().value;
      this.answerNext = resolve;
      if (waiting) this.accept(waiting).catch(reject);
    });
  }

  /** Answers a call ringing now (the oldest when no Call-ID is given). */
  async answer(callId?: string): Promise<void> {
    const incoming = callId ? this.ringing.get(callId) : this.ringing.values().next().value;
    if (!incoming) throw new Error('no call is ringing');
    await this.accept(incoming);
  }

  /** Sends DTMF digits (SIP INFO) on the current call, e.g. '#' to release the door of the calling door phone. */
  async sendDtmf(digits: string): Promise<void> {
    if (!this.currentCall) throw new Error('no call is up');
    await this.currentCall.sendDtmf(digits);
  }

  /** Hangs the current call up. */
  async hangup(): Promise<CallEnd | undefined> {
    const call = this.currentCall;
    if (!call) return undefined;
    await call.hangup();
    return call.ended;
  }

  /** Calls a station (a 10-digit SIP number of the address book). */
  async call(number: string, opts: { timeoutMs?: number } = {}): Promise<ActiveCall> {
    const call = await this.sipStation.call(number, opts);
    this.currentCall = call;
    return call;
  }

  /** Unregisters and closes the SIP connection. */
  async stop(): Promise<void> {
    await this.sipStation.stop();
    this.sipStation.removeAllListeners();
  }

  private async accept(incoming: IncomingCall): Promise<void> {
    this.ringing.delete(incoming.callId);
    await incoming.accept();
  }

  private wire(): void {
    const s = this.sipStation;
    s.on('incoming', (incoming: IncomingCall) => {
      this.ringing.set(incoming.callId, incoming);
      this.received.add(incoming.callId);
      if (this.answerNext) {
        this.accept(incoming).catch((error: Error) => this.emit('sip-error', error));
      } else if (!s.autoAnswer) incoming.ring().catch(() => {});
      this.emit('incoming', incoming);
    });
    s.on('answered', (call: ActiveCall) => {
      this.ringing.delete(call.callId);
      this.currentCall = call;
      if (this.received.has(call.callId)) {
        const waiting = this.answerNext;
        this.answerNext = null;
        waiting?.(call);
      }
      this.emit('answered', call);
    });
    s.on('dtmf', (tone: DtmfEvent) => this.emit('dtmf', tone));
    s.on('ended', (end: { callId: string; by: CallEnd['by'] }) => {
      this.ringing.delete(end.callId);
      this.received.delete(end.callId);
      if (this.currentCall?.callId === end.callId) this.currentCall = null;
      this.emit('ended', end);
    });
    s.on('unregistered', () => this.emit('unregistered'));
  }
}
