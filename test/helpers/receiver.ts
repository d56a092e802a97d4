import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

// A webhook receiver written outside the service: it verifies every request with the Standard Webhooks
// library (not the service's code) and keeps each event once per webhook-id, as a receiver should.

export interface Received {
  id: string;
  type: string;
  timestamp: string;
  data: any;
  signature: string;
  at: number;
}

export interface Receiver {
  url: string;
  /** Every verified request, duplicates included, in arrival order. */
  requests: Received[];
  /** Each webhook-id once (the first arrival). */
  events: Map<string, Received>;
  /** Requests whose signature did not verify with any of the secrets. */
  rejected: number;
  /** Secrets that verify (a rotation adds one). */
  secrets: string[];
  /** While true, requests get no answer at all (an attempt in flight); they are counted as not received. */
  hold: boolean;
  /** Requests held so far. */
  held: number;
  /** How to answer: 200 by default; a function of the request (its status and headers). */
  answer: (r: Received, attempt: number) => { status: number; headers?: Record<string, string> };
  /** Waits until `accept(events)` holds. */
  until(accept: (events: Received[]) => boolean, timeoutMs?: number): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startReceiver(t: { teardown(fn: () => unknown): void }): Promise<Receiver> {
  const waiters = new Set<() => void>();
  const attempts = new Map<string, number>();
  const r: Receiver = {
    url: '',
    requests: [],
    events: new Map(),
    rejected: 0,
    secrets: [],
    hold: false,
    held: 0,
    answer: () => ({ status: 200 }),
    until(accept, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const list = [...r.events.values()];
          if (!accept(list)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(list);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`receiver: condition not met; got ${[...r.events.values()].map((e) => e.type).join(', ')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = { 'webhook-id': String(req.headers['webhook-id']), 'webhook-timestamp': String(req.headers['webhook-timestamp']), 'webhook-signature': String(req.headers['webhook-signature']) };
      const verified = r.secrets.some((secret) => {
        try {
          new Webhook(secret).verify(body, headers);
          return true;
        } catch {
          return false;
        }
      });
      if (!verified) {
        r.rejected++;
        res.writeHead(400).end('bad signature');
        return;
      }
      if (r.hold) {
        r.held++;
        for (const w of [...waiters]) w();
        return;
      }
      const parsed = JSON.parse(body) as { type: string; timestamp: string; data: unknown };
      const got: Received = { id: headers['webhook-id'], type: parsed.type, timestamp: parsed.timestamp, data: parsed.data, signature: headers['webhook-signature'], at: Date.now() };
      const attempt = (attempts.get(got.id) ?? 0) + 1;
      attempts.set(got.id, attempt);
      const { status, headers: out } = r.answer(got, attempt);
      if (status >= 200 && status < 300) {
        r.requests.push(got);
        if (!r.events.has(got.id)) r.events.set(got.id, got);
      }
      res.writeHead(status, out).end(status < 300 ? 'ok' : 'no');
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  t.teardown(() => {
    server.closeAllConnections();
    return r.close();
  });
  return r;
}
