import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, sleep } from './proc.js';
import { root } from './service.js';

/** A reference MQTT broker without authentication, in its own process. */
export interface ReferenceBroker {
  pid: number;
  url: string;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, after?: () => void) {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    after?.();
  };
}

/** Mosquitto 2 on a free port: no persistence, no connection maximum (the open-file limit is its only one). */
export async function startMosquitto(children: ChildProcess[]): Promise<ReferenceBroker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'icbench-mosquitto-'));
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 0.0.0.0\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_dest none\n`);
  const broker = spawn('mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(broker);
  await sleep(500);
  return { pid: broker.pid!, url: `mqtt://127.0.0.1:${port}`, stop: stopper(broker, () => rmSync(dir, { recursive: true, force: true })) };
}

/** aedes with default options (bench/lib/bare-aedes.ts) on a free port. */
export async function startBareAedes(children: ChildProcess[]): Promise<ReferenceBroker> {
  const port = await freePort();
  const broker = fork(join(root, 'bench/lib/bare-aedes.ts'), [String(port)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(broker);
  await new Promise((r) => broker.once('message', r));
  return { pid: broker.pid!, url: `mqtt://127.0.0.1:${port}`, stop: stopper(broker) };
}
