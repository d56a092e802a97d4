import type { Client } from 'aedes';
import type { SessionRegistry } from '../cluster/routing.js';
import type { Logger } from '../logger.js';
import type { DeviceEventSink, HelloFacts } from '../provisioning/channel.js';
import { parseHello, parseStatus } from './payloads.js';
import type { PresenceTracker } from './presence-tracker.js';

/** How long after CONNECT a device without a valid hello still gets its commands. */
export const HELLO_GRACE_MS = 5000;
/** Hellos handed to the engine in one call at most (a storm's hellos cost a few statements per batch). */
export const MAX_HELLO_BATCH = 500;
/** Batches being processed at once; hellos arriving meanwhile gather into the next one. */
const HELLO_BATCHES_IN_FLIGHT = 2;

/** What the gateway keeps of one connection: when it authenticated, its registry epoch, whether its hello was processed. */
interface SessionState {
  startedAt: number;
  epoch: number | undefined;
  ready: boolean;
  /** A valid hello arrived and is being processed: the grace period is for devices that send none. */
  hello: boolean;
}

/** Runs `fn` after `ms` without keeping the process alive (tests pass their own). */
export type Timer = (ms: number, fn: () => void) => void;
const unrefTimer: Timer = (ms, fn) => void setTimeout(fn, ms).unref();
const newState = (): SessionState => ({ startedAt: Date.now(), epoch: undefined, ready: false, hello: false });

/**
 * The live device sessions: which connection currently speaks for each MAC, when it began, whether its
 * hello has been processed (commands wait for it), and what the devices say (hello, command status),
 * which goes to presence and to the provisioning engine. A takeover replaces a MAC's entry; the older
 * connection ending later changes nothing.
 */
export class Sessions {
  private readonly byMac = new Map<string, Client>();
  /** One small record per connection (a WeakMap entry each, not three): held sessions are the gateway's memory. */
  private readonly state = new WeakMap<Client, SessionState>();
  private sink: DeviceEventSink | undefined;
  /** Hellos waiting for a batch, by MAC (a device's later hello replaces its earlier one). */
  private helloQueue = new Map<string, { client: Client; hello: HelloFacts }>();
  private helloBatches = 0;
  private helloScheduled = false;

  constructor(
    private readonly presence: PresenceTracker,
    private readonly addressOf: (client: Client) => string,
    private readonly registry: SessionRegistry,
    private readonly log: Logger,
    private readonly after: Timer = unrefTimer,
  ) {}

  setSink(sink: DeviceEventSink) {
    this.sink = sink;
  }

  get size(): number {
    return this.byMac.size;
  }

  /**
   * Authentication succeeded: the session's start is recorded before the broker replays anything stored,
   * and the registry makes it the MAC's session (an older one on another process is closed).
   */
  async begin(client: Client): Promise<void> {
    const state = newState();
    this.state.set(client, state);
    state.epoch = (await this.registry.claim(client.id)).epoch;
  }

  startOf(client: Client): number | undefined {
    return this.state.get(client)?.startedAt;
  }

  opened(client: Client) {
    const now = new Date();
    this.byMac.set(client.id, client);
    this.presence.mark({ mac: client.id, status: 'online', epoch: this.state.get(client)?.epoch, gateway: this.registry.gatewayId, connectedAt: now, seenAt: now, ip: this.addressOf(client) });
    // Commands start after the hello, which tells whether the device was reset; a device that sends no
    // valid hello is served all the same after a grace period. One whose hello waits in a batch (a storm
    // outlasting the grace) is not: it would get commands before its hello is read, and be woken twice.
    this.graceFor(client);
  }

  private graceFor(client: Client) {
    this.after(HELLO_GRACE_MS, () => {
      if (this.byMac.get(client.id) === client && !this.isReady(client) && !this.state.get(client)?.hello) this.markReady(client);
    });
  }

  closed(client: Client) {
    // After a takeover the old session's disconnect must not mark the device offline.
    if (this.byMac.get(client.id) !== client) return;
    this.byMac.delete(client.id);
    const epoch = this.state.get(client)?.epoch;
    this.presence.mark({ mac: client.id, status: 'offline', epoch, seenAt: new Date() });
    if (epoch !== undefined) this.registry.release(client.id, epoch).catch((err: unknown) => this.log.warn({ mac: client.id, err: (err as Error).message }, 'session registry: release failed'));
  }

  /** When the device's current session began, once its hello was processed (CommandChannel). */
  connectedSince(mac: string): number | null {
    const client = this.byMac.get(mac);
    const state = client && this.state.get(client);
    return state && state.ready ? state.startedAt : null;
  }

  hello(client: Client, payload: Buffer) {
    const parsed = parseHello(payload);
    if (!parsed.ok) {
      this.log.warn({ mac: client.id, reason: parsed.reason }, 'hello ignored: invalid payload');
      if (!this.isReady(client)) this.markReady(client);
      return;
    }
    const { model, firmware, ip, configHash } = parsed.value;
    const state = this.state.get(client);
    if (state) state.hello = true;
    this.presence.mark({ mac: client.id, seenAt: new Date(), model, firmware, ip: ip ?? this.addressOf(client) });
    const hello: HelloFacts = { model, firmware, configHash };
    if (this.sink?.devicesHello) {
      this.helloQueue.delete(client.id);
      this.helloQueue.set(client.id, { client, hello });
      return this.scheduleHellos();
    }
    this.helloAlone(client, hello);
  }

  /** The engine first learns what the hello says (a reset ends one-time Autop), then gets the device. */
  private helloAlone(client: Client, hello: HelloFacts) {
    if (this.byMac.get(client.id) !== client) return;
    this.report(async () => {
      try {
        await this.sink?.deviceHello(client.id, hello);
      } catch (err) {
        // A hello that could not be read leaves the device as one that sent none: served after a grace period.
        const state = this.state.get(client);
        if (state) state.hello = false;
        this.graceFor(client);
        throw err;
      }
      this.markReady(client);
    });
  }

  /** Hellos go to the engine in batches: at once when a batch slot is free, else when one frees up. */
  private scheduleHellos() {
    if (this.helloScheduled || this.helloBatches >= HELLO_BATCHES_IN_FLIGHT || !this.helloQueue.size) return;
    this.helloScheduled = true;
    // The rest of this I/O turn's hellos join the batch.
    setImmediate(() => {
      this.helloScheduled = false;
      while (this.helloBatches < HELLO_BATCHES_IN_FLIGHT && this.helloQueue.size) {
        const batch: { client: Client; hello: HelloFacts }[] = [];
        for (const [mac, entry] of this.helloQueue) {
          this.helloQueue.delete(mac);
          batch.push(entry);
          if (batch.length >= MAX_HELLO_BATCH) break;
        }
        this.helloBatches++;
        this.helloBatch(batch)
          .catch((err: unknown) => {
            this.log.error({ err, devices: batch.length }, 'provisioning engine call failed for a batch of hellos; each is tried alone');
            // One device's row failing the batch fails only that device (a database that is away fails all).
            if (batch.length > 1) for (const { client, hello } of batch) this.helloAlone(client, hello);
          })
          .finally(() => {
            this.helloBatches--;
            this.scheduleHellos();
          });
      }
    });
  }

  /** What `hello` does for one device, for a batch: the engine reads the hellos, then gets the devices. */
  private async helloBatch(batch: { client: Client; hello: HelloFacts }[]): Promise<void> {
    const sink = this.sink!;
    await sink.devicesHello!(batch.map(({ client, hello }) => ({ mac: client.id, hello })));
    // A session taken over meanwhile is left to its successor, which says hello itself.
    const current = batch.map((b) => b.client).filter((client) => this.byMac.get(client.id) === client);
    const registered = await Promise.all(
      current.map(async (client) => {
        const state = this.readied(client);
        try {
          if (state.epoch !== undefined) await this.registry.ready(client.id, state.epoch, state.startedAt);
          return client.id;
        } catch (err) {
          this.log.warn({ mac: client.id, err: (err as Error).message }, 'session registry: ready not recorded');
          return null;
        }
      }),
    );
    const macs = registered.filter((m): m is string => m !== null);
    if (sink.devicesReady) await sink.devicesReady(macs);
    else await Promise.all(macs.map((mac) => sink.deviceReady(mac)));
  }

  status(client: Client, jobId: string, payload: Buffer) {
    const parsed = parseStatus(payload);
    if (!parsed.ok) {
      this.log.warn({ mac: client.id, jobId, reason: parsed.reason }, 'command status ignored: invalid');
      return;
    }
    if (parsed.dropped) this.log.warn({ mac: client.id, jobId, fields: parsed.dropped }, 'command status: invalid fields left out');
    this.report(() => this.sink?.commandStatus(client.id, jobId, parsed.value));
  }

  private isReady(client: Client): boolean {
    return this.state.get(client)?.ready === true;
  }

  /** Marks the session ready (a connection that never authenticated here gets its record now). */
  private readied(client: Client): SessionState {
    let state = this.state.get(client);
    if (!state) this.state.set(client, (state = newState()));
    state.ready = true;
    return state;
  }

  /** The device may now receive commands: the registry says so, then the engine hands it what waits. */
  private markReady(client: Client) {
    const { epoch, startedAt } = this.readied(client);
    this.report(async () => {
      if (epoch !== undefined) await this.registry.ready(client.id, epoch, startedAt);
      await this.sink?.deviceReady(client.id);
    });
  }

  /** Engine calls run detached from the MQTT flow; their failures are logged, never thrown at a device. */
  private report(call: () => Promise<void> | undefined) {
    call()?.catch((err: unknown) => this.log.error({ err }, 'provisioning engine call failed'));
  }

  /** Writes every session this process holds back into the registry (Redis came back empty). */
  async restoreRegistry(): Promise<number> {
    const held: { mac: string; epoch: number; since: number }[] = [];
    for (const [mac, client] of this.byMac) {
      const state = this.state.get(client);
      if (state?.epoch !== undefined) held.push({ mac, epoch: state.epoch, since: state.ready ? state.startedAt : 0 });
    }
    await this.registry.restore(held);
    // Wake-ups sent while Redis was away were lost: each ready device is handed what waits for it.
    const ready = held.filter((h) => h.since > 0);
    for (let i = 0; i < ready.length; i += 50) {
      await Promise.all(ready.slice(i, i + 50).map((h) => this.sink?.deviceReady(h.mac).catch((err: unknown) => this.log.warn({ mac: h.mac, err: (err as Error).message }, 'device not woken after Redis came back'))));
    }
    return held.length;
  }

  /** Whether this process holds the device's session (of that epoch, when given). */
  holds(mac: string, epoch?: number): boolean {
    const client = this.byMac.get(mac);
    return !!client && (epoch === undefined || this.state.get(client)?.epoch === epoch);
  }

  /** Closes a device's current session, if any (only the session of that epoch, when given). */
  close(mac: string, reason: string, epoch?: number) {
    const client = this.byMac.get(mac);
    if (!client || (epoch !== undefined && this.state.get(client)?.epoch !== epoch)) return;
    this.log.info({ mac, reason }, 'closing device session');
    client.close();
  }

  closeAll(): Promise<void> {
    return Promise.all([...this.byMac.values()].map((c) => new Promise<void>((resolve) => c.close(() => resolve())))).then(() => undefined);
  }
}
