import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { DomainEvents, type DomainEventMap } from '../shared/events.js';

/** Events other processes must hear: the gateways' MAC library caches and sessions, the engine's follower. */
export interface ClusterEventMap extends DomainEventMap {
  'directory.changed': Record<string, never>;
  /** An API token was revoked: other API processes drop it from their token caches. */
  'token.revoked': { tokenId: string };
}
const forwarded: (keyof DomainEventMap)[] = ['mac-library.added', 'mac-library.removed', 'device.removed'];

/**
 * Carries domain events between the processes of a deployment over Redis pub/sub. What this process
 * emits locally is published; what other processes publish is re-emitted on `remote`, a separate
 * emitter, so a process never handles its own event twice. Pub/sub loses what is sent while a
 * connection is down: listeners that cache (the gateway's MAC library) also reload when the bus
 * reconnects (`onReconnect`).
 */
export class ClusterBus {
  readonly remote = new DomainEvents();
  private directoryListeners: (() => void)[] = [];
  private tokenListeners: ((tokenId: string) => void)[] = [];
  private reconnectListeners: (() => void)[] = [];
  private subscriber: Redis | null = null;
  private readonly channel: string;
  private readonly offs: (() => void)[] = [];

  constructor(
    private readonly redis: Redis,
    prefix: string,
    private readonly instance: string,
    private readonly log: Logger,
  ) {
    this.channel = `${prefix}:events`;
  }

  /** Publishes this process's domain events to the others. */
  forward(local: DomainEvents): void {
    for (const name of forwarded) this.offs.push(local.on(name, (payload) => this.publish(name, payload)));
  }

  /** A directory write happened here: the engine processes' followers render. */
  directoryChanged = (): void => this.publish('directory.changed', {});

  onDirectoryChanged(listener: () => void): void {
    this.directoryListeners.push(listener);
  }

  /** A token was revoked here: the other processes' token caches forget it. */
  tokenRevoked = (tokenId: string): void => this.publish('token.revoked', { tokenId });

  onTokenRevoked(listener: (tokenId: string) => void): void {
    this.tokenListeners.push(listener);
  }

  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  private publish<K extends keyof ClusterEventMap>(name: K, payload: ClusterEventMap[K]): void {
    this.redis.publish(this.channel, JSON.stringify({ from: this.instance, name, payload })).catch((err: unknown) => this.log.warn({ event: name, err: (err as Error).message }, 'cluster event not published'));
  }

  async start(): Promise<void> {
    const sub = this.redis.duplicate();
    this.subscriber = sub;
    sub.on('error', (err) => this.log.warn({ err: err.message }, 'cluster event connection error'));
    let subscribedOnce = false;
    sub.on('ready', () => {
      if (subscribedOnce) for (const l of this.reconnectListeners) l();
    });
    sub.on('message', (_channel, text: string) => {
      let message: { from: string; name: keyof ClusterEventMap; payload: unknown };
      try {
        message = JSON.parse(text) as typeof message;
      } catch {
        return;
      }
      if (message.from === this.instance) return;
      if (message.name === 'directory.changed') for (const l of this.directoryListeners) l();
      else if (message.name === 'token.revoked') {
        const id = (message.payload as { tokenId?: unknown } | null)?.tokenId;
        if (typeof id === 'string') for (const l of this.tokenListeners) l(id);
      }
      else if (forwarded.includes(message.name)) this.remote.emit(message.name, message.payload as never);
    });
    await sub.subscribe(this.channel);
    subscribedOnce = true;
  }

  async stop(): Promise<void> {
    for (const off of this.offs) off();
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}
