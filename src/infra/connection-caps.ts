import type { Server as HttpServer } from 'node:http';
import net from 'node:net';
import type { Logger } from '../logger.js';

/** The limits one HTTP listener applies to every connection (HTTP_* in src/config.ts). */
export interface HttpLimits {
  /** A request's headers must be complete this long after its first byte (408, then closed). */
  headersTimeoutMs: number;
  /** The whole request, body included (firmware uploads), must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Connections held at most; over it a new one is closed at accept. */
  maxConnections: number;
  /** Connections held at most from one source (an IPv4 address, an IPv6 /64); 0: no cap. */
  maxConnectionsPerAddress: number;
  /** Sources the per-address cap does not apply to (trusted proxies: HAProxy carries everybody). */
  exempt: string[];
}

/** How often Node checks the header and request timeouts (its default, 30 s, would let 5 s become 35 s). */
const TIMEOUT_CHECK_MS = 1000;

/**
 * Applies the timeouts and the connection caps to an HTTP server before it listens: a slow or idle client
 * holds a connection for seconds, not a minute, and one address cannot take the connections everybody
 * else needs. Connections over a cap are closed at accept, before any HTTP parsing.
 */
export function limitHttpServer(server: HttpServer, limits: HttpLimits, onRefused: Refusals): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // Read when the server starts listening (Node's connection tracking is set up on 'listening').
  (server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = TIMEOUT_CHECK_MS;
  server.maxConnections = limits.maxConnections;
  server.on('drop', (data?: { remoteAddress?: string }) => onRefused(data?.remoteAddress ?? 'unknown', 'total'));
  capPerAddress(server, limits.maxConnectionsPerAddress, limits.exempt, (address) => onRefused(address, 'address'));
}

export type Refusals = (address: string, cap: 'address' | 'total') => void;

/** Logs refused connections at most once a second, with how many were refused since the last line. */
export function refusalLog(log: Logger, listener: string): Refusals {
  let last = 0;
  let refused = 0;
  return (address, cap) => {
    refused++;
    if (Date.now() - last < 1000) return;
    log.warn({ listener, ip: address, cap, refused }, cap === 'address' ? 'connections refused at accept: one source over its cap' : 'connections refused at accept: listener at its connection maximum');
    last = Date.now();
    refused = 0;
  };
}

/**
 * Caps the connections a listener holds from one source. The listener's own connection handlers run only
 * for connections within the cap; the others are destroyed at once. Answers the count per source.
 */
export function capPerAddress(server: net.Server, max: number, exempt: string[], onRefused: (address: string) => void): (address: string) => number {
  const open = new Map<string, number>();
  if (max <= 0) return () => 0;
  const exempted = blockList(exempt);
  const handlers = server.listeners('connection') as ((socket: net.Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: net.Socket) => {
    const address = plainAddress(socket.remoteAddress ?? '');
    // No address: the peer is already gone; the handlers see a closed socket, as without a cap.
    if (!address || exempted.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4')) {
      for (const h of handlers) h.call(server, socket);
      return;
    }
    const key = sourceKey(address);
    const n = open.get(key) ?? 0;
    if (n >= max) {
      socket.on('error', () => {});
      socket.destroy();
      onRefused(address);
      return;
    }
    open.set(key, n + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left > 0) open.set(key, left);
      else open.delete(key);
    });
    for (const h of handlers) h.call(server, socket);
  });
  return (address) => open.get(sourceKey(address)) ?? 0;
}

/**
 * What one source is: an IPv4 address (also written as ::ffff:a.b.c.d), or an IPv6 /64, the smallest
 * block a subscriber gets; counting single IPv6 addresses would give everyone 2^64 allowances.
 */
export function sourceKey(source: string): string {
  const address = plainAddress(source);
  if (!net.isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(':')}::/64`;
}

/** An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 client) as IPv4. */
const plainAddress = (address: string) => /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1] ?? address;

function blockList(entries: string[]): net.BlockList {
  const list = new net.BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const family = net.isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return list;
}
