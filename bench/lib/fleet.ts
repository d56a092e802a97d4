import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { WorkerConfig, WorkerProgress } from '../../simulators/fleet-worker.js';
import { root } from './service.js';

/** Sockets one fleet process holds at most: each process may open 20,000 files here, and that is not raisable. */
export const DEVICES_PER_FLEET_PROCESS = 18_000;

/** How many fleet processes `devices` need, one source address each (~28k ephemeral ports towards one port). */
export const fleetProcessesFor = (devices: number, perProcess = DEVICES_PER_FLEET_PROCESS) => Math.max(1, Math.ceil(devices / perProcess));

/** A fleet's progress summed over its processes. */
export interface FleetProgress {
  online: number;
  /** Devices subscribed to their commands now. */
  subscribed: number;
  /** Connection attempts refused with a CONNACK return code, by code, and in all. */
  refusals: Record<string, number>;
  refused: number;
  /** Connection attempts that ended before a CONNACK, by error, and in all. */
  failures: Record<string, number>;
  failed: number;
  /** When a device last subscribed (0: none yet). */
  lastSubscribedAt: number;
}

/** A simulated fleet spread over worker processes, each connecting from its own loopback address. */
export interface BenchFleet {
  workers: ChildProcess[];
  /** Sends the workers their start, unless startFleet did; answers when it did. */
  start(): number;
  /** Devices subscribed to their commands, as last reported. */
  subscribed(): number;
  progress(): FleetProgress;
  /** The MACs subscribed now. */
  held(): Promise<string[]>;
  /** When each command id first reached a device. */
  received(): Promise<Map<string, number>>;
  /** Asks every worker one question and collects the answers (message types of simulators/fleet-worker.ts). */
  ask<T>(type: string): Promise<T[]>;
  stop(): Promise<void>;
}

const sumCounts = (all: Record<string, number>[]) => {
  const sum: Record<string, number> = {};
  for (const counts of all) for (const [k, n] of Object.entries(counts)) sum[k] = (sum[k] ?? 0) + n;
  return sum;
};
const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * Starts `workers` fleet workers (127.0.0.2, 127.0.0.3, …) over the MACs; `children` collects them for cleanup.
 * With `start: false` the devices wait for `start()` (a storm measures its broker before).
 */
export async function startFleet(opts: {
  url: string;
  secret: string | null;
  hello: boolean;
  macs: string[];
  workers: number;
  children: ChildProcess[];
  start?: boolean;
  /** Devices that already hold their configuration say so in their hello (a reboot storm). */
  configHashes?: Record<string, string>;
  /** Devices the whole fleet starts per second (absent: all at once). */
  startPerSecond?: number;
}): Promise<BenchFleet> {
  const per = Math.ceil(opts.macs.length / opts.workers);
  const progress = new Map<ChildProcess, WorkerProgress>();
  const workers = await Promise.all(
    Array.from({ length: opts.workers }, (_, i) =>
      new Promise<ChildProcess>((resolve, reject) => {
        const child = fork(join(root, 'simulators/fleet-worker.ts'), [], {
          execArgv: ['--import', 'tsx', '--max-old-space-size=4096'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        opts.children.push(child);
        child.on('message', (m: any) => m.type === 'progress' && progress.set(child, m));
        child.once('error', reject);
        child.once('exit', (code) => reject(new Error(`fleet worker exited (${code}) before it was ready`)));
        child.once('message', (m: any) => (m.type === 'ready' ? resolve(child) : reject(new Error('worker did not start'))));
        const slice = opts.macs.slice(i * per, (i + 1) * per);
        const configHashes = opts.configHashes ? Object.fromEntries(slice.flatMap((m) => (opts.configHashes![m] ? [[m, opts.configHashes![m]]] : []))) : undefined;
        const config: WorkerConfig = { macs: slice, url: opts.url, factorySecret: opts.secret, localAddress: `127.0.0.${i + 2}`, type: '0', hello: opts.hello, configHashes, startPerSecond: opts.startPerSecond ? opts.startPerSecond / opts.workers : undefined };
        child.send({ type: 'configure', config });
      }),
    ),
  );
  let startedAt = 0;
  const start = () => {
    if (!startedAt) {
      startedAt = Date.now();
      for (const w of workers) w.send({ type: 'start' });
    }
    return startedAt;
  };
  if (opts.start !== false) start();
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
    start,
    subscribed: () => [...progress.values()].reduce((a, p) => a + p.subscribed, 0),
    progress() {
      const all = [...progress.values()];
      const refusals = sumCounts(all.map((p) => p.refusals));
      const failures = sumCounts(all.map((p) => p.failures));
      return {
        online: all.reduce((a, p) => a + p.online, 0),
        subscribed: all.reduce((a, p) => a + p.subscribed, 0),
        refusals,
        refused: total(refusals),
        failures,
        failed: total(failures),
        lastSubscribedAt: Math.max(0, ...all.map((p) => p.lastSubscribedAt)),
      };
    },
    held: async () => (await ask<{ macs: string[] }>('held')).flatMap((m) => m.macs),
    ask: (type) => ask(type),
    async received() {
      const all = new Map<string, number>();
      for (const m of await ask<{ entries: [string, number][] }>('report', 'received')) {
        for (const [id, at] of m.entries) if (!all.has(id) || all.get(id)! > at) all.set(id, at);
      }
      return all;
    },
    async stop() {
      await Promise.all(workers.map((w) => new Promise<void>((r) => (w.exitCode !== null ? r() : (w.once('exit', () => r()), w.send({ type: 'stop' }))))));
    },
  };
}
