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
  private readonly startedAt = Date.now();
  readonly key: string | null;

  constructor(readonly opts: SimulatedDeviceOptions) {
    super();
    this.key = opts.key !== undefined ? opts.key : opts.factorySecret ? deriveDeviceKey(opts.factorySecret, opts.mac) : null;
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
        const hello = { model: this.opts.model, firmware: this.opts.firmware, uptime: Math.floor((Date.now() - this.startedAt) / 1000), ...(this.opts.configHash ? { configHash: this.opts.configHash } : {}) };
        client.publish(`devices/${this.opts.mac}/hello`, JSON.stringify(hello), { qos: 1 });
      }
      this.emit('online');
    });
    client.on('message', (topic, payload) => this.emit('message', topic, payload));
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
