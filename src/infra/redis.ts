import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import type { Logger } from '../logger.js';
import { backoffDelay } from './backoff.js';
import { findBinary } from './binaries.js';
import { freePort } from './net.js';

export interface RedisHandle {
  client: Redis;
  url: string;
  /** Set when the service had to start its own redis-server. */
  child: ChildProcess | null;
  close(): Promise<void>;
}

async function tryConnect(url: string): Promise<Redis | null> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 1500, maxRetriesPerRequest: 1, retryStrategy: () => null, enableOfflineQueue: false });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return client;
  } catch {
    client.disconnect();
    return null;
  }
}



/**
 * Reconnect delays of the service's Redis connections (and their duplicates: queues, subscribers): 100 ms
 * doubling to 2 s, with jitter, so the processes of a deployment do not knock in step while Redis is away,
 * and one that comes back (empty, in a tenth of a second) is found again within 2 s.
 */
export const redisRetryDelay = (times: number, random: () => number = Math.random): number => backoffDelay(Math.max(0, times - 1), { minMs: 100, maxMs: 2000 }, random);

function persistentClient(url: string, logger: Logger): Redis {
  const client = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (times) => redisRetryDelay(times) });
  client.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  return client;
}

/**
 * Connects to Redis. With REDIS_URL unset and nothing answering on 6379, starts a private redis-server
 * (no persistence) when the binary is installed, so the service runs on a bare machine.
 */
export async function connectRedis(opts: { url: string; explicit: boolean; pathEnv: string | undefined; logger: Logger }): Promise<RedisHandle> {
  const probe = await tryConnect(opts.url);
  if (probe) {
    probe.disconnect();
    const client = persistentClient(opts.url, opts.logger);
    return { client, url: opts.url, child: null, close: async () => void (await client.quit().catch(() => client.disconnect())) };
  }
  if (opts.explicit) throw new Error(`Redis at REDIS_URL (${opts.url}) does not answer`);
  const binary = findBinary('redis-server', opts.pathEnv);
  if (!binary) {
    throw new Error('No Redis answers on 127.0.0.1:6379 and redis-server is not installed. Install it (Debian: apt-get install redis-server) or set REDIS_URL.');
  }
  const port = await freePort();
  opts.logger.warn({ port }, 'no Redis on 127.0.0.1:6379; starting a private redis-server without persistence');
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 50; i++) {
    const c = await tryConnect(url);
    if (c) {
      c.disconnect();
      const client = persistentClient(url, opts.logger);
      return {
        client,
        url,
        child,
        close: async () => {
          await client.quit().catch(() => client.disconnect());
          child.kill('SIGTERM');
        },
      };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error('the private redis-server did not start');
}

/** Deletes every key under a prefix (a deployment's queues when it is torn down: tests, benchmarks). */
export async function deleteKeysUnder(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await client.del(...keys);
  } while (cursor !== '0');
}
