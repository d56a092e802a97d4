import { EventEmitter } from 'node:events';
import net from 'node:net';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A TCP proxy in front of the real PostgreSQL (127.0.0.1:5432) that a test turns off and on. `cut()`
 * destroys every connection and resets each new one at once (the database is unreachable: clients see
 * ECONNRESET or "Connection terminated unexpectedly"); `restore()` lets connections through again. It counts
 * the connection attempts made while cut (`attempts`), so a test can tell a backoff from a storm, and
 * emits `attempt` for each. `stall()` silences it instead (a partition: nothing is reset, nothing answers).
 */
export interface PgProxy extends EventEmitter<{ attempt: [number] }> {
  port: number;
  /** A DATABASE_URL like `url` that goes through this proxy. */
  via(url: string): string;
  /** Connections open through the proxy now. */
  readonly open: number;
  /** Attempts refused since the last cut. */
  readonly attempts: number;
  cut(): void;
  /** Silence without a reset (a partition): open connections stop carrying bytes, new ones hang. */
  stall(): void;
  restore(): void;
}

export async function startPgProxy(t: Teardown, target = { host: '127.0.0.1', port: 5432 }): Promise<PgProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let isCut = false;
  let stalled = false;
  const held = new Set<net.Socket>();
  let attempts = 0;
  const events = new EventEmitter<{ attempt: [number] }>();
  const server = net.createServer((client) => {
    client.on('error', () => {});
    if (stalled) {
      held.add(client);
      client.on('close', () => held.delete(client));
      return;
    }
    if (isCut) {
      attempts++;
      client.resetAndDestroy();
      events.emit('attempt', attempts);
      return;
    }
    const upstream = net.connect(target.port, target.host);
    upstream.on('error', () => {});
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream).pipe(client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) (a.destroy(), b.destroy());
        for (const c of held) c.destroy();
        server.close(() => resolve());
      }),
  );
  // Getters defined, not assigned: Object.assign would copy their values once.
  Object.defineProperties(events, {
    open: { get: () => pairs.size },
    attempts: { get: () => attempts },
  });
  return Object.assign(events as PgProxy, {
    port,
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    cut() {
      isCut = true;
      attempts = 0;
      for (const [a, b] of pairs) {
        a.resetAndDestroy();
        b.destroy();
      }
    },
    stall() {
      stalled = true;
      for (const [a, b] of pairs) {
        a.unpipe();
        b.unpipe();
        a.pause();
        b.pause();
      }
    },
    restore() {
      isCut = false;
      if (stalled) {
        // Connections silenced by a stall are dropped; the pool makes new ones.
        stalled = false;
        for (const [a, b] of pairs) (a.destroy(), b.destroy());
        for (const c of held) c.destroy();
      }
    },
  });
}
