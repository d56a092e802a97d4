import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { root } from './service.js';

/** A simulated fleet spread over worker processes, each connecting from its own loopback address. */
export interface BenchFleet {
  workers: ChildProcess[];
  /** Devices subscribed to their commands, as last reported. */
  subscribed(): number;
  /** When each command id first reached a device. */
  received(): Promise<Map<string, number>>;
  /** Asks every worker one question and collects the answers (message types of simulators/fleet-worker.ts). */
  ask<T>(type: string): Promise<T[]>;
  stop(): Promise<void>;
}

/** Starts `workers` fleet workers (127.0.0.2, 127.0.0.3, …) over the MACs; `children` collects them for cleanup. */
export async function startFleet(opts: { url: string; secret: string | null; hello: boolean; macs: string[]; workers: number; children: ChildProcess[] }): Promise<BenchFleet> {
  const per = Math.ceil(opts.macs.length / opts.workers);
  const progress = new Map<ChildProcess, number>();
  const workers = await Promise.all(
    Array.from({ length: opts.workers }, (_, i) =>
      new Promise<ChildProcess>((resolve, reject) => {
        const child = fork(join(root, 'simulators/fleet-worker.ts'), [], {
          execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
          env: {
            ...process.env,
            FLEET_WORKER_CONFIG: JSON.stringify({ macs: opts.macs.slice(i * per, (i + 1) * per), url: opts.url, factorySecret: opts.secret, localAddress: `127.0.0.${i + 2}`, type: '0', hello: opts.hello }),
          },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        opts.children.push(child);
        child.on('message', (m: any) => m.type === 'progress' && progress.set(child, m.subscribed));
        child.once('error', reject);
        child.once('message', (m: any) => (m.type === 'ready' ? resolve(child) : reject(new Error('worker did not start'))));
      }),
    ),
  );
  for (const w of workers) w.send({ type: 'start' });
  const ask = <T>(type: string, answer = type) =>
    Promise.all(
      workers.map(
        (w) =>
          new Promise<T>((resolve) => {
            const onMessage = (m: any) => {
              if (m.type !== answer) return;
              w.off('message', onMessage);
              resolve(m as T);
            };
            w.on('message', onMessage);
            w.send({ type });
          }),
      ),
    );
  return {
    workers,
    subscribed: () => [...progress.values()].reduce((a, b) => a + b, 0),
    ask: (type) => ask(type),
    async received() {
      const all = new Map<string, number>();
      for (const m of await ask<{ entries: [string, number][] }>('report', 'received')) {
        for (const [id, at] of m.entries) if (!all.has(id) || all.get(id)! > at) all.set(id, at);
      }
      return all;
    },
    async stop() {
      await Promise.all(workers.map((w) => new Promise<void>((r) => (w.once('exit', () => r()), w.send({ type: 'stop' })))));
    },
  };
}
