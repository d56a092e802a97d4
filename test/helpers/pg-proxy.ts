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
 * emits `attempt` for each.
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
  restore(): void;
}

export async function startPgProxy(t: Teardown, target = { host: '127.0.0.1', port: 5432 }): Promise<PgProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let isCut = false;
  let attempts = 0;
  const events = new EventEmitter<{ attempt: [number] }>();
  const server = net.createServer((client) => {
    client.on('error', () => {});
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
    restore() {
      isCut = false;
    },
  });
}
