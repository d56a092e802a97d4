import type { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import type { CommandChannel, DeviceCommand } from '../provisioning/channel.js';

// Targeted routing: a Redis hash names, for each connected MAC, the gateway process holding its session,
// the session's epoch and when it became ready; each gateway process listens on its own channel. A
// command costs one script call (look up, check the holder's lease, publish to that one process), and
// a gateway receives only its own devices' traffic (aedes' shared emitter would send every message to
// every process).

/** Where a device's session lives. */
export interface SessionClaim {
  /** Increasing across the deployment (Redis TIME in microseconds, never repeated). */
  epoch: number;
}

/** What the gateway's sessions record so commands and takeovers find them. */
export interface SessionRegistry {
  readonly gatewayId: string;
  /** A device authenticated here: this session now speaks for the MAC; an older one elsewhere is closed. */
  claim(mac: string): Promise<SessionClaim>;
  /** The session's hello was processed: commands may flow (the engine reads `since` as connectedSince). */
  ready(mac: string, epoch: number, since: number): Promise<void>;
  /** The session ended (only removes the entry if it is still this session's). */
  release(mac: string, epoch: number): Promise<void>;
  /** Writes back entries Redis lost (restarted empty), unless a newer session took the MAC meanwhile. */
  restore(sessions: { mac: string; epoch: number; since: number }[]): Promise<void>;
}

/** The single-process registry: epochs from the clock, nobody else to tell. */
export class LocalSessionRegistry implements SessionRegistry {
  private last = 0;
  constructor(readonly gatewayId: string) {}
  async claim(): Promise<SessionClaim> {
    this.last = Math.max(Date.now() * 1000, this.last + 1);
    return { epoch: this.last };
  }
  async ready(): Promise<void> {}
  async release(): Promise<void> {}
  async restore(): Promise<void> {}
}

const sessionsKey = (prefix: string) => `${prefix}:sessions`;
const gatewayChannel = (prefix: string, gatewayId: string) => `${prefix}:gateway:${gatewayId}:inbox`;
const gatewayLeaseKey = (prefix: string, gatewayId: string) => `${prefix}:gateway:${gatewayId}:lease`;
const epochKey = (prefix: string) => `${prefix}:session-epoch`;

/** Messages on a gateway's channel. */
export type GatewayMessage =
  | { t: 'command'; mac: string; command: DeviceCommand; dispatchedAt: number }
  // The epoch travels as text: Lua's cjson writes large numbers with 14 significant digits.
  | { t: 'close'; mac: string; epoch: string; reason: string };

// Entry: "<gateway> <epoch> <readySince or 0>". Epochs are formatted with %.0f: Lua's tostring would write
// 1.8e+15.
const CLAIM = `
local t = redis.call('TIME')
local e = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if e <= last then e = last + 1 end
local es = string.format('%.0f', e)
redis.call('SET', KEYS[2], es)
local prev = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. es .. ' 0')
if prev then
  local gw, pe = string.match(prev, '^(%S+) (%S+)')
  if gw ~= ARGV[2] then
    redis.call('PUBLISH', ARGV[3] .. gw .. ':inbox', cjson.encode({t = 'close', mac = ARGV[1], epoch = pe, reason = 'the device connected to another gateway process'}))
  end
end
return es`;

const READY = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.match(v, '^%S+ (%S+)') == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], string.match(v, '^(%S+ %S+)') .. ' ' .. ARGV[3])
end
return 0`;

const RESTORE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  local e = tonumber(string.match(v, '^%S+ (%S+)'))
  if e and e >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1`;

const RELEASE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.match(v, '^%S+ (%S+)') == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
return 0`;

// Answers the entry only while its gateway's lease lives: a process that died holds nothing.
const LOOKUP = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local gw = string.match(v, '^(%S+)')
if redis.call('EXISTS', ARGV[2] .. gw .. ':lease') == 0 then return false end
return v`;

const ROUTE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local gw = string.match(v, '^(%S+)')
if redis.call('EXISTS', ARGV[2] .. gw .. ':lease') == 0 then return 0 end
return redis.call('PUBLISH', ARGV[2] .. gw .. ':inbox', ARGV[3])`;

const gatewayPrefix = (prefix: string) => `${prefix}:gateway:`;

/** The registry in Redis, written by one gateway process. */
export class RedisSessionRegistry implements SessionRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly gatewayId: string,
  ) {}

  async claim(mac: string): Promise<SessionClaim> {
    const epoch = (await this.redis.eval(CLAIM, 2, sessionsKey(this.prefix), epochKey(this.prefix), mac, this.gatewayId, gatewayPrefix(this.prefix))) as string;
    return { epoch: Number(epoch) };
  }

  async ready(mac: string, epoch: number, since: number): Promise<void> {
    await this.redis.eval(READY, 1, sessionsKey(this.prefix), mac, String(epoch), String(since));
  }

  async release(mac: string, epoch: number): Promise<void> {
    await this.redis.eval(RELEASE, 1, sessionsKey(this.prefix), mac, String(epoch));
  }

  async restore(sessions: { mac: string; epoch: number; since: number }[]): Promise<void> {
    for (let i = 0; i < sessions.length; i += 1000) {
      const pipeline = this.redis.pipeline();
      for (const s of sessions.slice(i, i + 1000)) pipeline.eval(RESTORE, 1, sessionsKey(this.prefix), s.mac, this.gatewayId, String(s.epoch), String(s.since));
      await pipeline.exec();
    }
    // The epoch counter must stay ahead of every epoch in use.
    const highest = Math.max(0, ...sessions.map((s) => s.epoch));
    await this.redis.eval(`if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end return 0`, 1, epochKey(this.prefix), String(highest));
  }
}

/**
 * The engine's CommandChannel in a cluster: finds the process holding the device's session and
 * publishes the command to it. A device whose holder died reads as not connected.
 */
export class ClusterCommandChannel implements CommandChannel {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async connectedSince(mac: string): Promise<number | null> {
    const v = (await this.redis.eval(LOOKUP, 1, sessionsKey(this.prefix), mac, gatewayPrefix(this.prefix))) as string | null;
    if (!v) return null;
    const since = Number(v.split(' ')[2]);
    return since > 0 ? since : null;
  }

  async publish(mac: string, command: DeviceCommand): Promise<void> {
    const message: GatewayMessage = { t: 'command', mac, command, dispatchedAt: Date.now() };
    // Nobody listening means the session ended meanwhile: the job's answer deadline redelivers it.
    await this.redis.eval(ROUTE, 1, sessionsKey(this.prefix), mac, gatewayPrefix(this.prefix), JSON.stringify(message));
  }
}

/** A gateway process's lease: alive while refreshed; commands and presence trust only live holders. */
export class GatewayLease {
  private timer: NodeJS.Timeout | null = null;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly gatewayId: string,
    private readonly log: Logger,
    private readonly ttlMs = 15_000,
  ) {}

  async start(): Promise<void> {
    // Redis restarted empty: the lease is written again at once, not at the next renewal.
    this.redis.on('ready', () => void this.renew().catch(() => {}));
    await this.renew();
    this.timer = setInterval(() => void this.renew().catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'gateway lease not renewed')), this.ttlMs / 3);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    await this.redis
      .multi()
      .set(gatewayLeaseKey(this.prefix, this.gatewayId), String(process.pid), 'PX', this.ttlMs)
      .zadd(gatewaysKey(this.prefix), Date.now() + this.ttlMs, this.gatewayId)
      .exec();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.redis.multi().del(gatewayLeaseKey(this.prefix, this.gatewayId)).zrem(gatewaysKey(this.prefix), this.gatewayId).exec().catch(() => {});
  }
}

const gatewaysKey = (prefix: string) => `${prefix}:gateways`;

/** The gateway processes whose leases live (expired members are dropped on the way). */
export async function liveGateways(redis: Redis, prefix: string): Promise<string[]> {
  const now = Date.now();
  const [, [, live]] = (await redis.multi().zremrangebyscore(gatewaysKey(prefix), '-inf', now).zrangebyscore(gatewaysKey(prefix), now, '+inf').exec()) as [unknown, [unknown, string[]]];
  return live;
}

/** A gateway process's inbox: commands for its devices and takeovers of its sessions. */
export class GatewayInbox {
  private subscriber: Redis | null = null;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly gatewayId: string,
    private readonly handle: (message: GatewayMessage) => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const sub = this.redis.duplicate();
    this.subscriber = sub;
    sub.on('error', (err) => this.log.warn({ err: err.message }, 'gateway inbox connection error'));
    sub.on('message', (_channel, text: string) => {
      let message: GatewayMessage;
      try {
        message = JSON.parse(text) as GatewayMessage;
      } catch {
        return;
      }
      this.handle(message);
    });
    await sub.subscribe(gatewayChannel(this.prefix, this.gatewayId));
  }

  async stop(): Promise<void> {
    await this.subscriber?.quit().catch(() => this.subscriber?.disconnect());
  }
}
