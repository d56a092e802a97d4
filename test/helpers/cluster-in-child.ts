// Starts a cluster through the test helper in a process of its own and prints its processes' pids, for a
// test that then kills this process with SIGKILL (no teardown runs). It ends by itself once the test that
// started it has gone (its standard input closes).
import { startTestCluster } from './cluster.js';

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
const cluster = await startTestCluster({ teardown: () => {} }, { gateways: 1, engines: 1, apis: 1, databaseUrl: process.env.CLUSTER_DATABASE_URL! });
process.stdout.write(`${JSON.stringify({ launcher: cluster.launcherPid, workers: cluster.workers.map((w) => w.pid), dataDir: cluster.dataDir })}\n`);
