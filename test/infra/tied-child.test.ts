import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { spawnTied } from '../../src/infra/tied-child.js';

// What a test starts through spawnTied ends with the test process, however that ends (kill -9 included),
// and a program that ends by itself leaves no watcher behind.
const root = resolve(import.meta.dirname, '../..');

/** Whether a process still runs (a zombie waiting for its parent to reap it has ended). */
const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
  } catch {
    return false;
  }
};
/** A bounded wait for processes to end: a guard against a hang, not a measure. */
const ended = async (pids: number[]) => {
  for (let i = 0; i < 600 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 50));
  return pids.filter(running);
};
const watchersOf = (pid: number) =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').includes(`tied-child-watcher ${pid}`);
      } catch {
        return false;
      }
    });

t.test('the program and what it forked end when the process that started it is killed', async (t) => {
  const starter = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/helpers/tied-in-child.ts')], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  const starterExited = new Promise<void>((r) => starter.once('exit', () => r()));
  let pids: number[] = [];
  t.teardown(async () => {
    if (starter.exitCode === null && starter.signalCode === null) starter.kill('SIGKILL');
    await starterExited;
    for (const pid of pids.filter(running)) process.kill(pid, 'SIGKILL');
  });
  const started = await new Promise<{ child: number; grandchild: number }>((resolvePromise, reject) => {
    void starterExited.then(() => reject(new Error('the starting process ended first')));
    createInterface({ input: starter.stdout! }).once('line', (line) => resolvePromise(JSON.parse(line)));
  });
  pids = [started.child, started.grandchild];
  t.ok(pids.every(running), 'the program and its own child run');
  starter.kill('SIGKILL');
  await starterExited;
  t.same(await ended(pids), [], 'both ended with the process that started them');
  t.same(await ended(watchersOf(started.child).map(Number)), [], 'and the watcher is gone too');
});

t.test('a program that ends by itself takes its watcher along; signals reach the program itself', async (t) => {
  const quick = spawnTied('/bin/sh', ['-c', 'exit 3'], { stdio: 'ignore' });
  const code = await new Promise<number | null>((r) => quick.once('exit', (c) => r(c)));
  t.equal(code, 3, 'the exit code is the program’s');
  t.same(await ended(watchersOf(quick.pid!).map(Number)), [], 'no watcher left');

  const sleeper = spawnTied('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => void (sleeper.exitCode === null && sleeper.kill('SIGKILL')));
  t.equal(readFileSync(`/proc/${sleeper.pid}/comm`, 'utf8').trim(), 'sleep', 'the child is the program, not a wrapper');
  const signal = new Promise<NodeJS.Signals | null>((r) => sleeper.once('exit', (_c, s) => r(s)));
  sleeper.kill('SIGTERM');
  t.equal(await signal, 'SIGTERM');
});
