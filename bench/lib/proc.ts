import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** A /proc file of a process; null once the process is gone (a worker that died mid-run). */
function procFile(pid: number, name: string): string | null {
  try {
    return readFileSync(`/proc/${pid}/${name}`, 'utf8');
  } catch {
    return null;
  }
}

/** Resident set size of a process, in bytes (NaN when it is gone). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(procFile(pid, 'status') ?? '');
  return m ? Number(m[1]) * 1024 : NaN;
}

/** User + system CPU time a process has used, in seconds (NaN when it is gone). */
export function cpuSeconds(pid: number): number {
  const stat = procFile(pid, 'stat');
  if (stat === null) return NaN;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `probe` holds; false when `timeoutMs` passed first. */
export async function waitUntil(probe: () => Promise<boolean> | boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await sleep(stepMs);
  }
  return false;
}

/**
 * Runs a benchmark's `main`, then its cleanups (databases, Redis keys, temporary files) once, whether it
 * finished, failed or was interrupted (SIGINT, SIGTERM); the children still running are killed first.
 */
export async function runBench(children: ChildProcess[], cleanups: (() => Promise<void> | void)[], main: () => Promise<void>): Promise<void> {
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const c of cleanups.reverse()) {
        try {
          await c();
        } catch (err) {
          console.error('cleanup failed:', err);
        }
      }
    })());
  const abort = (why: string, code: number) => {
    console.error(`${why}: stopping and cleaning up`);
    void cleanup().finally(() => process.exit(code));
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => abort(signal, 130));
  // Whatever fails outside `main`'s await (a stray promise, an event handler) cleans up too instead of crashing.
  process.on('unhandledRejection', (err) => (console.error(err), abort('unhandled rejection', 1)));
  process.on('uncaughtException', (err) => (console.error(err), abort('uncaught exception', 1)));
  try {
    await main();
  } catch (err) {
    console.error(err);
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

export { freePort } from '../../src/infra/net.js';
