import { randomUUID } from 'node:crypto';
import { SipStation, type ActiveCall, type DtmfEvent, type IncomingCall, type SipTransport } from './sip/station.js';

// The simulated device's SIP side (device-simulator.ts composes it): the station for the configured
// account, its calls, and the relays DTMF opens.

export interface DeviceSipOptions {
  enabled: boolean;
  /** Answer incoming calls after ringing this long (indoor monitors); otherwise they ring until answered or cancelled. */
  autoAnswer?: { ringMs: number };
  /** Source address of the SIP socket (defaults to the device's localAddress). */
  localAddress?: string;
  /** CA to trust for SIP over TLS (defaults to the device's `ca`). */
  ca?: Buffer;
  /** Wait this long before trying again when the SIP server cannot be reached (default 5000). */
  retryMs?: number;
  /** SIP start lines and sip.js debug output; never gets the password. */
  logger?: (line: string) => void;
}

/** The SIP account a configuration carries (Config.Account1.*). */
export interface SipAccountConfig {
  number: string;
  authName: string;
  password: string;
  server: string;
  port: number;
  domain: string;
  transport: Extract<SipTransport, 'udp' | 'tcp' | 'tls'>;
}

/** 'sip-registered': the outcome of a REGISTER with the configured account. */
export interface SipRegistration {
  number: string;
  transport: SipAccountConfig['transport'];
  server: string;
  port: number;
  /** SIP status of the final response (200: registered). */
  status: number;
}

/** A relay the door phone opened ('door-opened'), as reported on devices/{MAC}/events. */
export interface DoorOpening {
  eventId: string;
  relay: number;
  name: string;
  method: 'dtmf';
  /** The remote party's SIP number (the station that sent the DTMF code). */
  by: string;
  callId: string;
  at: string;
  /** Whether the event reached the broker (PUBACK). */
  published: boolean;
}

/** The SIP account a configuration carries; null when it has none (or no server). */
export function sipAccountOf(c: ReadonlyMap<string, string>): SipAccountConfig | null {
  const number = c.get('Config.Account1.GENERAL.UserName');
  const password = c.get('Config.Account1.GENERAL.Pwd');
  const server = c.get('Config.Account1.SIP.Server');
  const port = Number(c.get('Config.Account1.SIP.Port'));
  if (c.get('Config.Account1.GENERAL.Enable') === '0' || !number || !password || !server || !Number.isInteger(port) || port <= 0) return null;
  const transport = ({ '0': 'udp', '1': 'tcp', '2': 'tls' } as const)[c.get('Config.Account1.SIP.TransType') ?? '0'] ?? 'udp';
  return { number, authName: c.get('Config.Account1.GENERAL.AuthName') || number, password, server, port, domain: c.get('Config.Account1.SIP.Domain') || server, transport };
}

/** The relays a configuration enables, with their DTMF codes. */
export function relaysOf(config: ReadonlyMap<string, string>): { relay: number; name: string; dtmf: string }[] {
  const relays: { relay: number; name: string; dtmf: string }[] = [];
  for (let n = 1; n <= 8; n++) {
    const dtmf = config.get(`Config.DoorSetting.RELAY.DTMF${n}`);
    if (dtmf && config.get(`Config.DoorSetting.RELAY.Enable${n}`) === '1') relays.push({ relay: n, name: config.get(`Config.DoorSetting.RELAY.Name${n}`) ?? `Relay ${n}`, dtmf });
  }
  return relays;
}

/** What the SIP side needs of its device. */
export interface SipHost {
  mac: string;
  config: ReadonlyMap<string, string>;
  ca: Buffer | undefined;
  localAddress: string | undefined;
  stopped(): boolean;
  publish(subtopic: string, payload: string): Promise<void>;
  emit(event: string, ...args: unknown[]): boolean;
}

/** A device's SIP station, brought in line with its configuration; its events are emitted by the device. */
export class DeviceSip {
  /** The SIP user agent for the configured account. */
  station: SipStation | null = null;
  /** The account `station` was made for. */
  account: SipAccountConfig | null = null;
  /** Every REGISTER outcome, in order. */
  readonly registrations: SipRegistration[] = [];
  /** Relays opened, in order. */
  readonly doorOpenings: DoorOpening[] = [];
  /** Calls ringing here that nobody answered yet, by Call-ID. */
  readonly ringing = new Map<string, IncomingCall>();
  /** Calls up now, by Call-ID. */
  readonly activeCalls = new Map<string, ActiveCall>();
  /** Serializes SIP (re)configuration: one station at a time. */
  private chain: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | null = null;
  /** DTMF digits received per call, for codes longer than one digit. */
  private readonly dtmfBuffers = new Map<string, string>();

  constructor(
    private readonly host: SipHost,
    private readonly options: DeviceSipOptions | undefined,
  ) {}

  /** Whether the device makes calls at all (`sip.enabled`). */
  get enabled(): boolean {
    return !!this.options?.enabled;
  }

  /** Calls a number (an apartment number or a 10-digit SIP number) with the registered account. */
  async call(number: string, opts: { timeoutMs?: number; headers?: string[] } = {}): Promise<ActiveCall> {
    await this.chain;
    if (!this.station) throw new Error(`${this.host.mac} has no SIP account (sip disabled, or no configuration yet)`);
    return this.station.call(number, opts);
  }

  /**
   * The SIP number at the other end of a call: the caller of a call received, the station that answered a
   * call placed (for a call to an apartment number, which of its stations took it).
   */
  remoteParty(callId: string): string | undefined {
    return this.station ? this.station.remoteParty(callId) : undefined;
  }

  /** Answers a call ringing here (the oldest when no Call-ID is given). */
  async answer(callId?: string): Promise<void> {
    const incoming = callId ? this.ringing.get(callId) : this.ringing.values().next().value;
    if (!incoming) throw new Error(`${this.host.mac}: no call is ringing`);
    this.ringing.delete(incoming.callId);
    await incoming.accept();
  }

  /**
   * Brings the SIP station in line with the configuration: a new server, port, transport or account
   * unregisters the old station and registers a new one; no account stops it.
   */
  sync(): void {
    if (!this.enabled) return;
    void this.enqueue(() => this.reconcile());
  }

  enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.chain.then(step).catch((error: Error) => {
      this.host.emit('sip-error', error);
    });
    this.chain = next;
    return next;
  }

  private async reconcile(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const wanted = this.host.stopped() ? null : sipAccountOf(this.host.config);
    if (wanted && this.station && JSON.stringify(wanted) === JSON.stringify(this.account)) return;
    await this.down();
    if (!wanted) return;
    const sip = this.options!;
    const station = new SipStation({
      number: wanted.number,
      password: wanted.password,
      domain: wanted.domain,
      server: { host: wanted.server, port: wanted.port, transport: wanted.transport, ...((sip.ca ?? this.host.ca) ? { ca: sip.ca ?? this.host.ca } : {}) },
      ...((sip.localAddress ?? this.host.localAddress) ? { localAddress: sip.localAddress ?? this.host.localAddress } : {}),
      displayName: this.host.config.get('Config.Account1.GENERAL.DisplayName') ?? this.host.mac,
      ...(sip.logger ? { logger: sip.logger } : {}),
    });
    if (sip.autoAnswer) station.autoAnswer = sip.autoAnswer;
    this.wireStation(station);
    try {
      await station.start();
    } catch (error) {
      await station.stop().catch(() => {});
      this.host.emit('sip-error', error);
      if (!this.host.stopped()) this.retry = setTimeout(() => this.sync(), sip.retryMs ?? 5000);
      return;
    }
    if (this.host.stopped()) {
      await station.stop().catch(() => {});
      return;
    }
    this.station = station;
    this.account = wanted;
    const { status } = await station.register();
    if (this.station !== station) return; // stopped meanwhile
    const registration: SipRegistration = { number: wanted.number, transport: wanted.transport, server: wanted.server, port: wanted.port, status };
    this.registrations.push(registration);
    this.host.emit('sip-registered', registration);
    if (status !== 200) {
      // Refused or unanswered: a phone tries again a little later (a new station, a new connection).
      await this.down();
      if (!this.host.stopped()) this.retry = setTimeout(() => this.sync(), sip.retryMs ?? 5000);
    }
  }

  /**
   * Stops SIP for good: after the step under way (a REGISTER to a server that does not answer takes 32 s
   * to time out), or, when that takes longer than a few seconds, by closing the station under it.
   */
  async shutdown(graceful: boolean): Promise<void> {
    const within = async (work: Promise<unknown>, ms: number) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
    };
    await within(this.enqueue(() => this.down(graceful)), 3000);
    const station = this.station;
    this.station = null;
    this.account = null;
    // SipStation.stop() waits for a REGISTER under way to end; the device does not wait that long.
    if (station) await within(station.stop().catch(() => {}), 1000);
  }

  /** Unregisters and closes the SIP station (a power cut, `graceful` false, just closes it). */
  async down(graceful = true): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const station = this.station;
    this.station = null;
    this.account = null;
    this.ringing.clear();
    if (!station) return;
    for (const call of this.activeCalls.values()) await call.hangup().catch(() => {});
    this.activeCalls.clear();
    if (graceful) await station.stop();
    else await station.stop().catch(() => {});
    station.removeAllListeners();
    this.host.emit('sip-stopped');
  }

  private wireStation(station: SipStation): void {
    station.on('incoming', (incoming: IncomingCall) => {
      this.ringing.set(incoming.callId, incoming);
      // An auto-answering station rings by itself; otherwise the phone rings until someone answers.
      if (!station.autoAnswer) incoming.ring().catch(() => {});
      this.host.emit('sip-incoming', incoming);
    });
    station.on('answered', (call: ActiveCall) => {
      this.ringing.delete(call.callId);
      this.activeCalls.set(call.callId, call);
      this.host.emit('sip-answered', call);
    });
    station.on('ended', (end: { callId: string; by: 'local' | 'remote' }) => {
      this.ringing.delete(end.callId);
      this.activeCalls.delete(end.callId);
      this.dtmfBuffers.delete(end.callId);
      this.host.emit('sip-ended', end);
    });
    station.on('dtmf', (tone: DtmfEvent) => this.onDtmf(tone));
    station.on('unregistered', () => this.host.emit('sip-unregistered'));
  }

  /** A DTMF digit during a call: when the digits end in an enabled relay's code, that relay opens. */
  private onDtmf(tone: DtmfEvent): void {
    this.host.emit('sip-dtmf', tone);
    const digits = ((this.dtmfBuffers.get(tone.callId) ?? '') + tone.digit).slice(-4);
    const relay = relaysOf(this.host.config).find((r) => digits.endsWith(r.dtmf));
    if (!relay) return void this.dtmfBuffers.set(tone.callId, digits);
    this.dtmfBuffers.delete(tone.callId);
    const opening: DoorOpening = {
      eventId: randomUUID(),
      relay: relay.relay,
      name: relay.name,
      method: 'dtmf',
      by: tone.from,
      callId: tone.callId,
      at: new Date().toISOString(),
      published: false,
    };
    this.doorOpenings.push(opening);
    this.host.emit('door-opened', opening);
    const event = { type: 'door-opened', eventId: opening.eventId, relay: opening.relay, method: opening.method, ...(/^[0-9]{1,32}$/.test(opening.by) ? { by: opening.by } : {}), callId: opening.callId, at: opening.at };
    this.host.publish('events', JSON.stringify(event)).then(
      () => {
        opening.published = true;
        this.host.emit('door-event-published', opening);
      },
      (error: Error) => this.host.emit('sip-error', error),
    );
  }
}
