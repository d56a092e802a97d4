import { EventEmitter } from 'node:events';
import { Invitation, Inviter, Registerer, RegistererState, SessionState, UserAgent, type Info, type Session, type SessionDescriptionHandler } from 'sip.js';
import { LinkTransport, openLink, type LinkTransportOptions, type SipServerAddress } from './link.js';

export type { SipTransport } from './link.js';
export { takeStreamMessage } from './link.js';

export interface SipStationOptions {
  /** SIP user (account number), also the auth username. */
  number: string;
  password: string;
  /** Digest user name when it differs from `number` (only a misbehaving station does that). */
  authUsername?: string;
  /** SIP domain/realm used in the AOR sip:number@domain. */
  domain: string;
  /** For ws/wss the URL is ws(s)://host:port{wsPath ?? '/'}. */
  server: SipServerAddress;
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

  /** Calls `target`; `headers` are added to the INVITE as written ("X-IXG-Station: 0010"). */
  async call(target: string, opts: { timeoutMs?: number; headers?: string[] } = {}): Promise<ActiveCall> {
    const ua = this.requireStarted();
    const uri = UserAgent.makeURI(`sip:${target}@${this.opts.domain}`);
    if (!uri) throw new Error(`invalid SIP target ${target}`);
    const inviter = new Inviter(ua, uri, opts.headers?.length ? { extraHeaders: opts.headers } : {});
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
