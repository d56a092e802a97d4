import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import { deriveDeviceKey } from '../src/devices/device-key.js';
import type { DocumentReference } from '../src/provisioning/channel.js';
import { refusal } from './command-check.js';
import { DeviceConfiguration } from './device-config.js';
import { acceptsPin, cardAccess, fetchDocument, fetchNamedDocuments, fetchOneTimeLines, type HeldDocuments } from './device-documents.js';
import type { DeviceState, DownloadRequest, ReceivedCommand, ReceivedSize, SimulatedDeviceOptions } from './device-types.js';
import { downloadImage } from './firmware-download.js';
import { openRemotely, remoteOpeningEvent, type RemoteOpening } from './device-doors.js';
import { DeviceSip, relaysOf, sipAccountOf, type DoorOpening, type SipAccountConfig, type SipRegistration } from './device-sip.js';
import type { ActiveCall, IncomingCall, SipStation } from './sip/station.js';

export type { DeviceBehaviour, DeviceState, DownloadRequest, ReceivedCommand, ReceivedSize, SimulatedDeviceOptions } from './device-types.js';

export type { DeviceSipOptions, DoorOpening, SipAccountConfig, SipRegistration } from './device-sip.js';
export type { RemoteOpening } from './device-doors.js';

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
  /** Commands held in progress (`holdKinds`), each with what lets it go on. */
  private readonly held = new Map<string, () => void>();
  /** Calls: the station for the configured account (device-sip.ts). */
  private readonly sip: DeviceSip;
  /** The SIP user agent for the configured account (when `sip.enabled` and the configuration has one). */
  get sipStation(): SipStation | null {
    return this.sip.station;
  }
  /** The account `sipStation` was made for. */
  get sipAccount(): SipAccountConfig | null {
    return this.sip.account;
  }
  /** Every REGISTER outcome, in order. */
  get sipRegistrations(): readonly SipRegistration[] {
    return this.sip.registrations;
  }
  /** Relays opened by `open-door` commands, in order. */
  readonly remoteOpenings: RemoteOpening[] = [];
  /** Relays opened, in order. */
  get doorOpenings(): readonly DoorOpening[] {
    return this.sip.doorOpenings;
  }
  /** Calls ringing here that nobody answered yet, by Call-ID. */
  get ringing(): ReadonlyMap<string, IncomingCall> {
    return this.sip.ringing;
  }
  /** Calls up now, by Call-ID. */
  get activeCalls(): ReadonlyMap<string, ActiveCall> {
    return this.sip.activeCalls;
  }

  constructor(readonly opts: SimulatedDeviceOptions) {
    super();
    this.key = opts.key !== undefined ? opts.key : opts.factorySecret ? deriveDeviceKey(opts.factorySecret, opts.mac) : null;
    this.configHash = opts.configHash;
    this.firmware = opts.firmware;
    this.sip = new DeviceSip(
      {
        mac: opts.mac,
        config: this.config,
        ca: opts.ca,
        localAddress: opts.localAddress,
        stopped: () => this.state === 'stopped',
        publish: (subtopic, payload) => this.publish(subtopic, payload),
        emit: (event, ...args) => this.emit(event, ...args),
      },
      opts.sip,
    );
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
    const refused = b.plainKinds?.includes(command.kind) ? null : refusal(command, this.opts.model);
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
    if (command.kind === 'open-door') return void (await this.openDoor(command, answer, fail));
    this.working.add(command.id);
    try {
      await answer({ state: 'accepted' });
      if (b.holdKinds?.includes(command.kind)) {
        await answer({ state: 'in-progress', progress: 50 });
        await new Promise<void>((resolve) => this.held.set(command.id, resolve));
      }
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
        this.sip.sync();
      }
      if (command.kind === 'autop-once') {
        const p = command.params as { lines?: { key: string; value: string }[]; linesDocument?: DocumentReference };
        const lines = p.lines ?? (await fetchOneTimeLines(p.linesDocument!, (ref) => this.fetchDocument(ref)));
        if (!lines) return void (await fail('document_unavailable', 'the one-time Autop document could not be fetched or did not match its sha256'));
        // One-time lines go over the configuration, outside the managed set: carried out once.
        this.configuration.applyOnce(lines);
        this.sip.sync();
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

  /** An urgent door opening: the relay opens now, the answer goes out, then the door-opened event. */
  private async openDoor(command: ReceivedCommand, answer: (status: Record<string, unknown>) => Promise<void>, fail: (code: string, message: string) => Promise<void>): Promise<void> {
    const opening = openRemotely(this.config, command);
    if ('code' in opening) return void (await fail(opening.code, opening.message));
    this.applied.add(command.id);
    this.applications.push({ id: command.id, kind: command.kind });
    this.remoteOpenings.push(opening);
    this.emit('remote-open', opening);
    await answer({ state: 'succeeded' });
    await this.publish('events', JSON.stringify(remoteOpeningEvent(opening)));
    opening.published = true;
    this.emit('remote-open-published', opening);
  }

  /** Lets a held command (`holdKinds`) go on to its end; false when none of that id is held. */
  release(id: string): boolean {
    const go = this.held.get(id);
    this.held.delete(id);
    go?.();
    return go !== undefined;
  }

  /** Ids of the commands held in progress now. */
  get holding(): string[] {
    return [...this.held.keys()];
  }

  /** A reset (either mode) clears what the cloud configured; a factory reset also the device's own network setup. */
  private reset(mode: 'config' | 'factory') {
    this.configuration.clear();
    this.directory.clear();
    this.configHash = undefined;
    if (mode === 'factory') this.network.clear();
    this.sip.sync();
  }

  /** Whether this door phone would open for the PIN (in `apt-pin` mode: with the apartment number) now. */
  acceptsPin(code: string, apartment?: string, at = new Date()): boolean {
    return acceptsPin(this.directory, code, apartment, at);
  }

  /**
   * A card held to this device's reader (an access terminal, type 50, or a door phone): when its credentials
   * list has the card, relay 1 opens and a `door-opened` event with `method: "card"` and the lift floors the
   * card enabled goes to the cloud (resolved once the broker took it).
   */
  async presentCard(number: string, at = new Date()): Promise<{ opens: boolean; floors: string[] }> {
    const access = cardAccess(this.directory, number, at);
    if (!access.opens) return access;
    const event = { type: 'door-opened', eventId: `card-${randomUUID().slice(0, 8)}`, relay: 1, method: 'card', floors: access.floors, at: at.toISOString() };
    await this.publish('events', JSON.stringify(event));
    return access;
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
    const sipDown = this.sip.enabled ? this.sip.enqueue(() => this.sip.down()) : Promise.resolve();
    await Promise.all([sipDown, new Promise((r) => setTimeout(r, delay))]);
    if ((this.state as DeviceState) === 'stopped') return;
    this.startedAt = Date.now();
    this.boots.push(this.startedAt);
    this.start();
    this.sip.sync();
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
    await Promise.all([this.sip.enabled ? this.sip.shutdown(graceful) : undefined, client ? new Promise<void>((resolve) => client.end(!graceful, {}, () => resolve())) : undefined]);
  }

  // ---- SIP (device-sip.ts) ------------------------------------------------------------------------------

  /** The SIP account the configuration carries now; null when it has none (or no server). */
  sipAccountFromConfig(): SipAccountConfig | null {
    return sipAccountOf(this.config);
  }

  /** The relays the configuration enables, with their DTMF codes. */
  relays(): { relay: number; name: string; dtmf: string }[] {
    return relaysOf(this.config);
  }

  /** Calls a number (an apartment number or a 10-digit SIP number) with the registered account. */
  call(number: string, opts: { timeoutMs?: number; headers?: string[] } = {}): Promise<ActiveCall> {
    return this.sip.call(number, opts);
  }

  /**
   * The SIP number at the other end of a call: the caller of a call received, the station that answered a
   * call placed (for a call to an apartment number, which of its stations took it).
   */
  remoteParty(callId: string): string | undefined {
    return this.sip.remoteParty(callId);
  }

  /** Answers a call ringing here (the oldest when no Call-ID is given). */
  answer(callId?: string): Promise<void> {
    return this.sip.answer(callId);
  }
}
