import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import type { Socket } from 'node:net';

// A watcher shell holds the read end of a pipe from this process; only the pipe's end (this process
// exited, however: kill -9 included) or the child's own end makes it act. It ignores the signals a
// terminal or a test runner sends to the whole group, so it is still there to clean up after them.
const WATCHER = 'trap "" INT TERM HUP; read _; kill -KILL -"$1" 2>/dev/null';

/**
 * Starts a program that cannot outlive this process: it leads a process group of its own, and when this
 * process ends without stopping it, a watcher kills that group (the program and anything it forked).
 * The child is the program itself, so signals, `exitCode` and stdio work as with `spawn`. For programs
 * that cannot watch their parent themselves (redis-server, HAProxy, SIPp); Kamailio has its own guard
 * (calls/kamailio.ts), the cluster launcher `--exit-with-parent`.
 */
export function spawnTied(command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, { ...options, detached: true });
  if (child.pid === undefined) return child; // not started: its 'error' event says why
  const watcher = spawn('/bin/sh', ['-c', WATCHER, 'tied-child-watcher', String(child.pid)], { stdio: ['pipe', 'ignore', 'ignore'] });
  watcher.on('error', () => {});
  watcher.stdin!.on('error', () => {});
  // The watcher never keeps this process alive; the child does, as a spawned child always does.
  watcher.unref();
  (watcher.stdin as Socket).unref();
  // The program ended: the watcher sweeps what it may have left in its group, then ends.
  child.once('exit', () => watcher.stdin!.end());
  return child;
}
