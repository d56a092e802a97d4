import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import { deriveDeviceKey } from '../src/devices/device-key.js';
import type { DocumentReference } from '../src/provisioning/channel.js';
import { refusal } from './command-check.js';
import { DeviceConfiguration } from './device-config.js';
import { fetchDocument, fetchNamedDocuments, type HeldDocuments } from './device-documents.js';
import type { DeviceState, DownloadRequest, ReceivedCommand, ReceivedSize, SimulatedDeviceOptions } from './device-types.js';
import { downloadImage } from './firmware-download.js';
import { SipStation, type ActiveCall, type DtmfEvent, type IncomingCall, type SipTransport } from './sip/station.js';

export type { DeviceBehaviour, DeviceState, DownloadRequest, ReceivedCommand, ReceivedSize, SimulatedDeviceOptions } from './device-types.js';

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

/**
 * A simulated intercom that speaks the device protocol of docs/device-protocol.md: connects with its MAC and
 * device key, publishes hello, subscribes to its commands, keeps alive, and reconnects with jittered backoff.
 */
export class SimulatedDevice extends EventEmitter {
  state: DeviceState = 'idle';
  lastRefusal: number | null = null;
  private client: MqttClient | null = null;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private startedAt = Date.now();
  readonly key: string | null;
  /** The device's configuration (Autop keys and values); empty in factory state. */
  readonly config = new Map<string, string>();
  /** The directory documents applied with the configuration (contacts, credentials), by name. */
  directory: HeldDocuments = new Map();
  /** The managed configuration and one-time lines, as they set `config`. */
  private readonly configuration = new DeviceConfiguration(this.config);
  /**
   * The network setup made at the device itself (web interface, keypad): a configuration reset keeps it, a
   * factory reset clears it. Keys the cloud set (`Config.Network.*` in an Autop line) are configuration.
   */
  readonly network = new Map<string, string>([['Network.Mode', 'dhcp']]);
  /** Every command's size on the wire. */
  readonly sizes: ReceivedSize[] = [];
  /** Every status answer published (or dropped by `dropAcks`), in order. */
  readonly answers: { id: string; status: Record<string, unknown> }[] = [];
  /** Every document fetched: its URL and the HTTP status. */
  readonly documentFetches: { url: string; status: number }[] = [];
  /** Hash of the last configuration applied; undefined in factory state. */
  configHash: string | undefined;
  /** Job ids applied, kept across reboots and resets (flash), so a redelivered job is never applied twice. */
  readonly applied = new Set<string>();
  /** Every command received, in order, duplicates included. */
  readonly received: ReceivedCommand[] = [];
  /** Commands applied, in order. */
  readonly applications: { id: string; kind: string }[] = [];
  readonly boots: number[] = [];
  /** The firmware version the device runs (and reports in its hello). */
  firmware: string;
  /** Every HTTP request of every firmware download. */
  readonly downloads: DownloadRequest[] = [];
  /** Commands being applied now: a redelivery of one of them is ignored (the first delivery answers). */
  private readonly working = new Set<string>();
  /** The SIP user agent for the configured account (when `sip.enabled` and the configuration has one). */
  sipStation: SipStation | null = null;
  /** The account `sipStation` was made for. */
  sipAccount: SipAccountConfig | null = null;
  /** Every REGISTER outcome, in order. */
  readonly sipRegistrations: SipRegistration[] = [];
  /** Relays opened, in order. */
  readonly doorOpenings: DoorOpening[] = [];
  /** Calls ringing here that nobody answered yet, by Call-ID. */
  readonly ringing = new Map<string, IncomingCall>();
  /** Calls up now, by Call-ID. */
  readonly activeCalls = new Map<string, ActiveCall>();
  /** Serializes SIP (re)configuration: one station at a time. */
  private sipChain: Promise<void> = Promise.resolve();
  private sipRetry: NodeJS.Timeout | null = null;
  /** DTMF digits received per call, for codes longer than one digit. */
  private readonly dtmfBuffers = new Map<string, string>();

  constructor(readonly opts: SimulatedDeviceOptions) {
    super();
    this.key = opts.key !== undefined ? opts.key : opts.factorySecret ? deriveDeviceKey(opts.factorySecret, opts.mac) : null;
    this.configHash = opts.configHash;
    this.firmware = opts.firmware;
  }

  get commandsTopic() {
    return `devices/${this.opts.mac}/commands`;
  }

  private clientOptions(): IClientOptions {
    return {
      clientId: this.opts.mac,
      ...(this.key !== null ? { username: this.opts.mac, password: this.key } : {}),
      protocolVersion: 4,
      clean: true, // the cloud keeps no session between connections: subscribe on every connect
      keepalive: this.opts.keepaliveSeconds ?? 60,
      reconnectPeriod: 0,
      connectTimeout: 30_000,
      resubscribe: false,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
    };
  }

  start(): void {
    if (this.state === 'stopped') return;
    this.state = 'connecting';
    const url = new URL(this.opts.url);
    const options = this.clientOptions();
    const client =
      url.protocol === 'mqtt:' || url.protocol === 'tcp:'
        ? new MqttClient(() => net.connect({ host: url.hostname, port: Number(url.port), localAddress: this.opts.localAddress }), options)
        : mqtt.connect(this.opts.url, options);
    this.client = client;
    /** Why this attempt failed before its CONNACK (socket error, CONNACK timeout), for benchmarks' reports. */
    let failure: string | null = null;
    client.on('connect', () => {
      this.attempt = 0;
      this.state = 'online';
      // Subscribe first and say hello once the subscription stands: the first command can follow the hello
      // within milliseconds.
      client.subscribe(this.commandsTopic, { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos === 128) this.emit('subscribe-refused', err ?? granted);
        else this.emit('subscribed');
        if (this.opts.hello !== false && this.client === client) this.sayHello().catch(() => {});
      });
      this.emit('online');
    });
    client.on('message', (topic, payload) => {
      this.emit('message', topic, payload);
      if (topic === this.commandsTopic) void this.onCommand(payload);
    });
    client.on('error', (err: Error & { code?: number | string }) => {
      if (typeof err.code === 'number') {
        this.lastRefusal = err.code; // CONNACK return code
        this.state = 'refused';
        this.emit('refused', err.code);
      } else failure ??= err.code ?? err.message;
    });
    client.on('close', () => {
      const wasOnline = this.state === 'online';
      if (this.state === 'connecting') this.emit('connect-failed', failure ?? 'closed before CONNACK');
      if (this.state !== 'stopped' && this.state !== 'refused') this.state = 'offline';
      if (wasOnline) this.emit('offline');
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect() {
    const policy = this.opts.reconnect ?? { minMs: 1000, maxMs: 30_000 };
    if (this.state === 'stopped' || policy === false || this.retryTimer) return;
    this.client?.removeAllListeners();
    this.client?.end(true);
    this.client = null;
    // Full jitter: after a power cut thousands of devices must not retry in lockstep.
    const ceiling = Math.min(policy.maxMs, policy.minMs * 2 ** this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, Math.random() * ceiling);
  }

  /**
   * Publishes a hello with what the device runs now: after every CONNECT, and again within a session to
   * ask to be provisioned afresh (after `document_unavailable`, say).
   */
  sayHello(): Promise<void> {
    const hello = { model: this.opts.model, firmware: this.firmware, uptime: Math.floor((Date.now() - this.startedAt) / 1000), ...(this.configHash ? { configHash: this.configHash } : {}) };
    return this.publish('hello', JSON.stringify(hello)).then(() => void this.emit('hello'));
  }

  private status(id: string, status: Record<string, unknown>): Promise<void> {
    this.answers.push({ id, status });
    return this.publish(`commands/${id}/status`, JSON.stringify(status)).catch(() => {});
  }

  private get auth() {
    return `Basic ${Buffer.from(`${this.opts.mac}:${this.key ?? ''}`).toString('base64')}`;
  }

  /** Fetches a document with the device's credentials and checks its bytes against the SHA-256 that names it. */
  fetchDocument(ref: DocumentReference): Promise<string | null> {
    return fetchDocument(ref, this.auth, this.documentFetches);
  }

  private async onCommand(payload: Buffer) {
    let command: ReceivedCommand;
    try {
      command = JSON.parse(payload.toString('utf8')) as ReceivedCommand;
    } catch {
      return;
    }
    if (typeof command.id !== 'string') return;
    this.received.push(command);
    this.sizes.push({ id: command.id, bytes: payload.length });
    this.emit('command', command);
    const b = this.opts.behaviour ?? {};
    // Counted when answering: an answer of a delivery whose acks were "lost" still goes out once the
    // command was delivered again meanwhile (the cloud waits for that later delivery's answer).
    const deliveries = () => this.received.filter((c) => c.id === command.id).length;
    if (b.offlineOnKinds?.includes(command.kind)) {
      this.client?.stream.destroy();
      return;
    }
    if (b.answerDelayMs) await new Promise((r) => setTimeout(r, b.answerDelayMs));
    const answer = (status: Record<string, unknown>) => (deliveries() <= (b.dropAcks ?? 0) ? Promise.resolve() : this.status(command.id, status));
    const fail = (code: string, message: string) => answer({ state: 'failed', error: { code, message } });

    if (this.applied.has(command.id)) {
      // A redelivery of a job already applied: answer again, apply nothing.
      await answer({ state: 'succeeded', ...(this.configHash ? { configHash: this.configHash } : {}) });
      return;
    }
    if (b.failKinds?.includes(command.kind)) return void (await fail('simulated_failure', `the simulator refuses ${command.kind}`));
    // A kind, mode or model this firmware cannot carry out is refused before anything changes.
    const refused = refusal(command, this.opts.model);
    if (refused) return void (await fail(refused.code, refused.message));
    if (this.working.has(command.id)) {
      // Redelivered while being applied (its answers were lost with a link, or mid-download): the device
      // says it is at it, so the cloud waits for the final answer instead of counting a delivery without
      // answer; the first delivery carries on and sends that final answer once (docs/device-protocol.md).
      await answer({ state: command.kind === 'upgrade' ? 'in-progress' : 'accepted' });
      return;
    }
    if (command.kind === 'upgrade') {
      await answer({ state: 'accepted' });
      await this.upgrade(command, (status) => this.status(command.id, status));
      return;
    }
    this.working.add(command.id);
    try {
      await answer({ state: 'accepted' });
      if (b.applyDelayMs) await new Promise((r) => setTimeout(r, b.applyDelayMs));
      if (command.configHash !== undefined) {
        // A document that cannot be fetched or does not match its sha256 is `document_unavailable`; bytes
        // that do not hash to `configHash` are `config_hash_mismatch`.
        const text = command.config ?? (command.configDocument ? await this.fetchDocument(command.configDocument) : null);
        if (text === null) return void (await fail('document_unavailable', 'the configuration document could not be fetched or did not match its sha256'));
        if (createHash('sha256').update(text).digest('hex') !== command.configHash) return void (await fail('config_hash_mismatch', 'the configuration does not match its hash'));
        // Documents the configuration names are fetched and verified first: a failure leaves the old lists.
        const documents = await fetchNamedDocuments(text, this.directory, (ref) => this.fetchDocument(ref));
        if (!documents) return void (await fail('document_unavailable', 'a directory document the configuration names could not be fetched'));
        this.configuration.applyManaged(text);
        this.directory = documents;
        this.configHash = command.configHash;
        this.syncSip();
      }
      if (command.kind === 'autop-once') {
        const p = command.params as { lines?: { key: string; value: string }[]; linesDocument?: DocumentReference };
        const lines = p.lines ?? (await this.oneTimeLines(p.linesDocument!));
        if (!lines) return void (await fail('document_unavailable', 'the one-time Autop document could not be fetched or did not match its sha256'));
        // One-time lines go over the configuration, outside the managed set: carried out once.
        this.configuration.applyOnce(lines);
        this.syncSip();
      }
      this.applied.add(command.id);
      this.applications.push({ id: command.id, kind: command.kind });
    } finally {
      this.working.delete(command.id);
    }
    // The answer is published and acknowledged (PUBACK) before a reboot or reset takes the link down.
    await answer({ state: 'succeeded', ...(this.configHash ? { configHash: this.configHash } : {}) });
    if (command.kind === 'reset') this.reset((command.params as { mode: 'config' | 'factory' }).mode);
    if (command.kind === 'reboot' || command.kind === 'reset') await this.reboot();
  }

  private async oneTimeLines(ref: DocumentReference): Promise<{ key: string; value: string }[] | null> {
    const body = await this.fetchDocument(ref);
    try {
      const lines = body === null ? null : (JSON.parse(body) as unknown);
      return Array.isArray(lines) ? (lines as { key: string; value: string }[]) : null;
    } catch {
      return null;
    }
  }

  /** A reset (either mode) clears what the cloud configured; a factory reset also the device's own network setup. */
  private reset(mode: 'config' | 'factory') {
    this.configuration.clear();
    this.directory.clear();
    this.configHash = undefined;
    if (mode === 'factory') this.network.clear();
    this.syncSip();
  }

  /** Whether this door phone would open for the PIN (in `apt-pin` mode: with the apartment number) now. */
  acceptsPin(code: string, apartment?: string, at = new Date()): boolean {
    const list = this.directory.get('credentials')?.content as { pinMode: string; pins: { code: string; apartment: string; validFrom: string | null; validUntil: string | null }[] } | undefined;
    if (!list) return false;
    return list.pins.some(
      (p) =>
        p.code === code &&
        (list.pinMode === 'pin' || p.apartment === apartment) &&
        (!p.validFrom || Date.parse(p.validFrom) <= at.getTime()) &&
        (!p.validUntil || at.getTime() < Date.parse(p.validUntil)),
    );
  }

  /**
   * A firmware upgrade as a device does it: download with Range resumption (and Retry-After when the
   * server is busy), verify the SHA-256, install, reboot into the new version (or, misbehaving, the old).
   */
  private async upgrade(command: ReceivedCommand, report: (status: Record<string, unknown>) => Promise<void>): Promise<void> {
    const p = command.params as { url: string; version: string; size: number; sha256: string; resetAfterUpgrade?: boolean };
    const b = this.opts.behaviour ?? {};
    this.working.add(command.id);
    try {
      const result = await downloadImage({
        jobId: command.id,
        url: p.url,
        size: p.size,
        auth: this.auth,
        ...(this.opts.localAddress ? { localAddress: this.opts.localAddress } : {}),
        behaviour: b,
        downloads: this.downloads,
        stopped: () => this.state === 'stopped',
        report,
      });
      if (!result.ok) return void (await report({ state: 'failed', error: { code: result.code, message: result.message } }));
      if (result.sha256 !== p.sha256) {
        return void (await report({ state: 'failed', error: { code: 'checksum_mismatch', message: `the image hashes to ${result.sha256}, not ${p.sha256}; not installed` } }));
      }
      await report({ state: 'in-progress', stage: 'installing', progress: 100 });
      await new Promise((r) => setTimeout(r, 20));
      await report({ state: 'in-progress', stage: 'rebooting', progress: 100 });
      if (!b.stayOnOldVersion) this.firmware = p.version;
      if (p.resetAfterUpgrade) this.reset('config');
      this.applied.add(command.id);
      this.applications.push({ id: command.id, kind: command.kind });
    } finally {
      this.working.delete(command.id);
    }
    await this.reboot();
  }

  /** Drops the connection and comes back after the reboot delay with a fresh uptime. */
  async reboot(): Promise<void> {
    const delay = this.opts.behaviour?.rebootDelayMs ?? 300;
    const client = this.client;
    this.client = null;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (client) {
      client.removeAllListeners();
      client.on('error', () => {});
      await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    }
    if (this.state === 'stopped') return;
    this.state = 'offline';
    this.emit('offline');
    this.emit('rebooting');
    // A rebooting phone drops its calls and its registration, and registers again once it is up.
    const sipDown = this.opts.sip?.enabled ? this.enqueueSip(() => this.stopSip()) : Promise.resolve();
    await Promise.all([sipDown, new Promise((r) => setTimeout(r, delay))]);
    if ((this.state as DeviceState) === 'stopped') return;
    this.startedAt = Date.now();
    this.boots.push(this.startedAt);
    this.start();
    this.syncSip();
  }

  publish(subtopic: string, payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    const client = this.client;
    if (!client) return Promise.reject(new Error('not connected'));
    return new Promise((resolve, reject) => client.publish(`devices/${this.opts.mac}/${subtopic}`, payload, { qos }, (err) => (err ? reject(err) : resolve())));
  }

  /** Stops for good; `graceful` sends DISCONNECT, otherwise the socket is just dropped (like a power cut). */
  async stop(graceful = true): Promise<void> {
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const client = this.client;
    this.client = null;
    await Promise.all([this.opts.sip?.enabled ? this.shutdownSip(graceful) : undefined, client ? new Promise<void>((resolve) => client.end(!graceful, {}, () => resolve())) : undefined]);
  }

  // ---- SIP ---------------------------------------------------------------------------------------------

  /** The SIP account the configuration carries now; null when it has none (or no server). */
  sipAccountFromConfig(): SipAccountConfig | null {
    const c = this.config;
    const number = c.get('Config.Account1.GENERAL.UserName');
    const password = c.get('Config.Account1.GENERAL.Pwd');
    const server = c.get('Config.Account1.SIP.Server');
    const port = Number(c.get('Config.Account1.SIP.Port'));
    if (c.get('Config.Account1.GENERAL.Enable') === '0' || !number || !password || !server || !Number.isInteger(port) || port <= 0) return null;
    const transport = ({ '0': 'udp', '1': 'tcp', '2': 'tls' } as const)[c.get('Config.Account1.SIP.TransType') ?? '0'] ?? 'udp';
    return { number, authName: c.get('Config.Account1.GENERAL.AuthName') || number, password, server, port, domain: c.get('Config.Account1.SIP.Domain') || server, transport };
  }

  /** The relays the configuration enables, with their DTMF codes. */
  relays(): { relay: number; name: string; dtmf: string }[] {
    const relays: { relay: number; name: string; dtmf: string }[] = [];
    for (let n = 1; n <= 8; n++) {
      const dtmf = this.config.get(`Config.DoorSetting.RELAY.DTMF${n}`);
      if (dtmf && this.config.get(`Config.DoorSetting.RELAY.Enable${n}`) === '1') relays.push({ relay: n, name: this.config.get(`Config.DoorSetting.RELAY.Name${n}`) ?? `Relay ${n}`, dtmf });
    }
    return relays;
  }

  /** Calls a number (an apartment number or a 10-digit SIP number) with the registered account. */
  async call(number: string, opts: { timeoutMs?: number } = {}): Promise<ActiveCall> {
    await this.sipChain;
    if (!this.sipStation) throw new Error(`${this.opts.mac} has no SIP account (sip disabled, or no configuration yet)`);
    return this.sipStation.call(number, opts);
  }

  /**
   * The SIP number at the other end of a call: the caller of a call received, the station that answered a
   * call placed (for a call to an apartment number, which of its stations took it).
   */
  remoteParty(callId: string): string | undefined {
    return this.sipStation ? this.sipStation.remoteParty(callId) : undefined;
  }

  /** Answers a call ringing here (the oldest when no Call-ID is given). */
  async answer(callId?: string): Promise<void> {
    const incoming = callId ? this.ringing.get(callId) : this.ringing.values().next().value;
    if (!incoming) throw new Error(`${this.opts.mac}: no call is ringing`);
    this.ringing.delete(incoming.callId);
    await incoming.accept();
  }

  /**
   * Brings the SIP station in line with the configuration: a new server, port, transport or account
   * unregisters the old station and registers a new one; no account stops it.
   */
  private syncSip(): void {
    if (!this.opts.sip?.enabled) return;
    void this.enqueueSip(() => this.reconcileSip());
  }

  private enqueueSip(step: () => Promise<void>): Promise<void> {
    const next = this.sipChain.then(step).catch((error: Error) => {
      this.emit('sip-error', error);
    });
    this.sipChain = next;
    return next;
  }

  private async reconcileSip(): Promise<void> {
    if (this.sipRetry) clearTimeout(this.sipRetry);
    this.sipRetry = null;
    const wanted = this.state === 'stopped' ? null : this.sipAccountFromConfig();
    if (wanted && this.sipStation && JSON.stringify(wanted) === JSON.stringify(this.sipAccount)) return;
    await this.stopSip();
    if (!wanted) return;
    const sip = this.opts.sip!;
    const station = new SipStation({
      number: wanted.number,
      password: wanted.password,
      domain: wanted.domain,
      server: { host: wanted.server, port: wanted.port, transport: wanted.transport, ...((sip.ca ?? this.opts.ca) ? { ca: sip.ca ?? this.opts.ca } : {}) },
      ...((sip.localAddress ?? this.opts.localAddress) ? { localAddress: sip.localAddress ?? this.opts.localAddress } : {}),
      displayName: this.config.get('Config.Account1.GENERAL.DisplayName') ?? this.opts.mac,
      ...(sip.logger ? { logger: sip.logger } : {}),
    });
    if (sip.autoAnswer) station.autoAnswer = sip.autoAnswer;
    this.wireStation(station);
    try {
      await station.start();
    } catch (error) {
      await station.stop().catch(() => {});
      this.emit('sip-error', error);
      if (this.state !== 'stopped') this.sipRetry = setTimeout(() => this.syncSip(), sip.retryMs ?? 5000);
      return;
    }
    if (this.state === 'stopped') {
      await station.stop().catch(() => {});
      return;
    }
    this.sipStation = station;
    this.sipAccount = wanted;
    const { status } = await station.register();
    if (this.sipStation !== station) return; // stopped meanwhile
    const registration: SipRegistration = { number: wanted.number, transport: wanted.transport, server: wanted.server, port: wanted.port, status };
    this.sipRegistrations.push(registration);
    this.emit('sip-registered', registration);
    if (status !== 200) {
      // Refused or unanswered: a phone tries again a little later (a new station, a new connection).
      await this.stopSip();
      if ((this.state as DeviceState) !== 'stopped') this.sipRetry = setTimeout(() => this.syncSip(), sip.retryMs ?? 5000);
    }
  }

  /**
   * Stops SIP for good: after the step under way (a REGISTER to a server that does not answer takes 32 s
   * to time out), or, when that takes longer than a few seconds, by closing the station under it.
   */
  private async shutdownSip(graceful: boolean): Promise<void> {
    const within = async (work: Promise<unknown>, ms: number) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
      clearTimeout(timer);
    };
    await within(this.enqueueSip(() => this.stopSip(graceful)), 3000);
    const station = this.sipStation;
    this.sipStation = null;
    this.sipAccount = null;
    // SipStation.stop() waits for a REGISTER under way to end; the device does not wait that long.
    if (station) await within(station.stop().catch(() => {}), 1000);
  }

  /** Unregisters and closes the SIP station (a power cut, `graceful` false, just closes it). */
  private async stopSip(graceful = true): Promise<void> {
    if (this.sipRetry) clearTimeout(this.sipRetry);
    this.sipRetry = null;
    const station = this.sipStation;
    this.sipStation = null;
    this.sipAccount = null;
    this.ringing.clear();
    if (!station) return;
    for (const call of this.activeCalls.values()) await call.hangup().catch(() => {});
    this.activeCalls.clear();
    if (graceful) await station.stop();
    else await station.stop().catch(() => {});
    station.removeAllListeners();
    this.emit('sip-stopped');
  }

  private wireStation(station: SipStation): void {
    station.on('incoming', (incoming: IncomingCall) => {
      this.ringing.set(incoming.callId, incoming);
      // An auto-answering station rings by itself; otherwise the phone rings until someone answers.
      if (!station.autoAnswer) incoming.ring().catch(() => {});
      this.emit('sip-incoming', incoming);
    });
    station.on('answered', (call: ActiveCall) => {
      this.ringing.delete(call.callId);
      this.activeCalls.set(call.callId, call);
      this.emit('sip-answered', call);
    });
    station.on('ended', (end: { callId: string; by: 'local' | 'remote' }) => {
      this.ringing.delete(end.callId);
      this.activeCalls.delete(end.callId);
      this.dtmfBuffers.delete(end.callId);
      this.emit('sip-ended', end);
    });
    station.on('dtmf', (tone: DtmfEvent) => this.onDtmf(station, tone));
    station.on('unregistered', () => this.emit('sip-unregistered'));
  }

  /** A DTMF digit during a call: when the digits end in an enabled relay's code, that relay opens. */
  private onDtmf(station: SipStation, tone: DtmfEvent): void {
    this.emit('sip-dtmf', tone);
    const digits = ((this.dtmfBuffers.get(tone.callId) ?? '') + tone.digit).slice(-4);
    const relay = this.relays().find((r) => digits.endsWith(r.dtmf));
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
    this.emit('door-opened', opening);
    const event = { type: 'door-opened', eventId: opening.eventId, relay: opening.relay, method: opening.method, ...(/^[0-9]{1,32}$/.test(opening.by) ? { by: opening.by } : {}), callId: opening.callId, at: opening.at };
    this.publish('events', JSON.stringify(event)).then(
      () => {
        opening.published = true;
        this.emit('door-event-published', opening);
      },
      (error: Error) => this.emit('sip-error', error),
    );
  }
}

