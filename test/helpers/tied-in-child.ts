// Starts a program with spawnTied in a process of its own and prints its pid, for a test that then kills
// this process with SIGKILL. The program, a shell, forks a grandchild too: the whole group must end.
// Should the test go first, this process ends as its standard input closes (and the watcher acts).
import { spawnTied } from '../../src/infra/tied-child.js';

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
const child = spawnTied('/bin/sh', ['-c', 'sleep 600 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
child.stdout!.once('data', (d: Buffer) => process.stdout.write(`${JSON.stringify({ child: child.pid, grandchild: Number(String(d).trim()) })}\n`));
