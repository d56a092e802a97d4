import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import t from 'tap';
import { createTestDatabase, removeQueues } from '../helpers/service.js';

// A test process killed outright (its timeout, kill -9) runs no teardown: the cluster launcher it started
// must still stop its workers and itself, because the pipe from that test process closed.
const root = resolve(import.meta.dirname, '../..');

/** Whether a process still runs (a zombie waiting for its parent to reap it has ended). */
const running = (pid: number) => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
  } catch {
    return false;
  }
};

t.test('a cluster launcher started by a test process that is killed stops its workers and itself', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  const starter = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/helpers/cluster-in-child.ts')], {
    cwd: root,
    env: { ...process.env, CLUSTER_DATABASE_URL: databaseUrl },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const starterExited = new Promise<void>((r) => starter.once('exit', () => r()));
  let pids: number[] = [];
  let dataDir = '';
  t.teardown(async () => {
    // Should this test fail, nothing it started stays either.
    if (starter.exitCode === null && starter.signalCode === null) {
      starter.kill('SIGKILL');
      await starterExited;
    }
    for (const pid of pids.filter(running)) process.kill(pid, 'SIGKILL');
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const prefix = (await db.query('SELECT id FROM deployment').catch(() => ({ rows: [] }))).rows[0]?.id;
    await db.end();
    if (prefix) await removeQueues(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', `ic:${prefix}`);
  });

  const started = await new Promise<{ launcher: number; workers: number[]; dataDir: string }>((resolvePromise, reject) => {
    void starterExited.then(() => reject(new Error('the starting process ended before its cluster was ready')));
    createInterface({ input: starter.stdout! }).once('line', (line) => resolvePromise(JSON.parse(line)));
  });
  pids = [started.launcher, ...started.workers];
  dataDir = started.dataDir;
  t.equal(started.workers.length, 3, 'a gateway, an engine and an API process');
  t.ok(pids.every(running), 'the launcher and its workers run');

  starter.kill('SIGKILL');
  await starterExited;
  // A guard against a hang, not a measure: the launcher stops its workers gracefully, then itself.
  for (let i = 0; i < 1200 && pids.some(running); i++) await new Promise((r) => setTimeout(r, 50));
  t.same(pids.filter(running), [], 'the launcher and every worker ended with the process that started them');
});
