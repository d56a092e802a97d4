import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import { deriveDeviceKey } from '../src/devices/device-key.js';

export type DeviceState = 'idle' | 'connecting' | 'online' | 'offline' | 'refused' | 'stopped';

export interface SimulatedDeviceOptions {
  mac: string;
  /** Device key; derived from `factorySecret` when absent. `null` connects without credentials (reference brokers). */
  key?: string | null;
  factorySecret?: string;
  /** mqtt://host:port or ws://host:port/mqtt */
  url: string;
  /** Loopback source address to connect from (benchmarks spread fleets over 127.0.0.x). */
  localAddress?: string;
  model: string;
  firmware: string;
  keepaliveSeconds?: number;
  /** Jittered exponential backoff between reconnects; false disables reconnecting. */
  reconnect?: { minMs: number; maxMs: number } | false;
  /** Publish hello after connecting (reference brokers have no use for it). */
  hello?: boolean;
  configHash?: string;
  /** CA certificate to trust for mqtts:// and wss:// (devices pin the cloud's CA). */
  ca?: Buffer;
  /** Ways to misbehave, for tests. */
  behaviour?: DeviceBehaviour;
}

export interface DeviceBehaviour {
  /** Send no status for the first N deliveries of each job (lost acks). */
  dropAcks?: number;
  /** Wait this long before answering a command. */
  answerDelayMs?: number;
  /** Answer these kinds with failure. */
  failKinds?: string[];
  /** Drop the connection on receiving these kinds, without answering (offline mid-job). */
  offlineOnKinds?: string[];
  /** How long a reboot or reset keeps the device away. */
  rebootDelayMs?: number;
}

/** A command as the cloud sends it on devices/{MAC}/commands. */
export interface ReceivedCommand {
  id: string;
  kind: string;
  params: Record<string, unknown>;
  config?: string;
  configHash?: string;
  expiresAt: string;
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
  /** Hash of the last configuration applied; undefined in factory state. */
  configHash: string | undefined;
  /** Job ids applied, kept across reboots and resets (flash), so a redelivered job is never applied twice. */
  readonly applied = new Set<string>();
  /** Every command received, in order, duplicates included. */
  readonly received: ReceivedCommand[] = [];
  /** Commands applied, in order. */
  readonly applications: { id: string; kind: string }[] = [];
  readonly boots: number[] = [];

  constructor(readonly opts: SimulatedDeviceOptions) {
    super();
    this.key = opts.key !== undefined ? opts.key : opts.factorySecret ? deriveDeviceKey(opts.factorySecret, opts.mac) : null;
    this.configHash = opts.configHash;
  }

  get commandsTopic() {
    return `devices/${this.opts.mac}/commands`;
  }

  private clientOptions(): IClientOptions {
    return {
      clientId: this.opts.mac,
      ...(this.key !== null ? { username: this.opts.mac, password: this.key } : {}),
      protocolVersion: 4,
      clean: false,
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
    client.on('connect', () => {
      this.attempt = 0;
      this.state = 'online';
      client.subscribe(this.commandsTopic, { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos === 128) this.emit('subscribe-refused', err ?? granted);
        else this.emit('subscribed');
      });
      if (this.opts.hello !== false) {
        const hello = { model: this.opts.model, firmware: this.opts.firmware, uptime: Math.floor((Date.now() - this.startedAt) / 1000), ...(this.configHash ? { configHash: this.configHash } : {}) };
        client.publish(`devices/${this.opts.mac}/hello`, JSON.stringify(hello), { qos: 1 });
      }
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
      }
    });
    client.on('close', () => {
      const wasOnline = this.state === 'online';
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

  private async onCommand(payload: Buffer) {
    let command: ReceivedCommand;
    try {
      command = JSON.parse(payload.toString('utf8')) as ReceivedCommand;
    } catch {
      return;
    }
    if (typeof command.id !== 'string') return;
    this.received.push(command);
    this.emit('command', command);
    const b = this.opts.behaviour ?? {};
    const deliveries = this.received.filter((c) => c.id === command.id).length;
    if (b.offlineOnKinds?.includes(command.kind)) {
      this.client?.stream.destroy();
      return;
    }
    if (b.answerDelayMs) await new Promise((r) => setTimeout(r, b.answerDelayMs));
    const answer = (status: Record<string, unknown>) =>
      deliveries <= (b.dropAcks ?? 0) ? Promise.resolve() : this.publish(`commands/${command.id}/status`, JSON.stringify(status)).catch(() => {});

    if (this.applied.has(command.id)) {
      // A redelivery of a job already applied: answer again, apply nothing.
      await answer({ state: 'succeeded', ...(this.configHash ? { configHash: this.configHash } : {}) });
      return;
    }
    if (b.failKinds?.includes(command.kind)) {
      await answer({ state: 'failed', error: { code: 'simulated_failure', message: `the simulator refuses ${command.kind}` } });
      return;
    }
    await answer({ state: 'accepted' });
    if (command.config !== undefined) {
      const hash = createHash('sha256').update(command.config).digest('hex');
      if (hash !== command.configHash) {
        await answer({ state: 'failed', error: { code: 'config_hash_mismatch', message: 'the configuration does not match its hash' } });
        return;
      }
      // Autop applies key = value lines over the current configuration.
      for (const line of command.config.split('\n')) {
        const eq = line.indexOf('=');
        if (line.startsWith('#') || eq < 0) continue;
        this.config.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
      }
      this.configHash = command.configHash;
    }
    this.applied.add(command.id);
    this.applications.push({ id: command.id, kind: command.kind });
    await answer({ state: 'succeeded', ...(this.configHash ? { configHash: this.configHash } : {}) });
    if (command.kind === 'reset') {
      this.config.clear();
      this.configHash = undefined;
    }
    if (command.kind === 'reboot' || command.kind === 'reset') await this.reboot();
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
    await new Promise((r) => setTimeout(r, delay));
    if ((this.state as DeviceState) === 'stopped') return;
    this.startedAt = Date.now();
    this.boots.push(this.startedAt);
    this.start();
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
    if (client) await new Promise<void>((resolve) => client.end(!graceful, {}, () => resolve()));
  }
}
