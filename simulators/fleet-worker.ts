import { Fleet } from './fleet.js';

// One process of a benchmark fleet: a slice of MACs from one source address. The parent sends
// { type: 'start' } to begin the storm, { type: 'report' } for the commands' arrival times and
// { type: 'stop' } to end it; progress is reported over IPC.
interface WorkerConfig {
  macs: string[];
  url: string;
  factorySecret: string | null;
  localAddress: string;
  type: string;
  hello: boolean;
}

const config = JSON.parse(process.env.FLEET_WORKER_CONFIG ?? '{}') as WorkerConfig;
const send = (m: unknown) => process.send?.(m);
const fleet = new Fleet({
  macs: config.macs,
  type: config.type,
  url: config.url,
  localAddresses: [config.localAddress],
  hello: config.hello,
  keepaliveSeconds: 120,
  reconnect: { minMs: 500, maxMs: 10_000 },
  ...(config.factorySecret ? { factorySecret: config.factorySecret } : { key: null }),
});
/** When each command id first reached a device of this process (for latency measurements). */
const receivedAt = new Map<string, number>();
let subscribed = 0;
let refusals = 0;
let lastSubscribedAt = 0;
for (const d of fleet.devices) {
  d.on('subscribed', () => {
    subscribed++;
    lastSubscribedAt = Date.now();
  });
  d.on('refused', () => refusals++);
  d.on('command', (c: { id: string }) => {
    if (!receivedAt.has(c.id)) receivedAt.set(c.id, Date.now());
  });
}

let ticker: NodeJS.Timeout | null = null;
process.on('message', async (msg: { type: string }) => {
  if (msg.type === 'start') {
    await fleet.start();
    ticker = setInterval(() => send({ type: 'progress', online: fleet.counts().online, subscribed, refusals, lastSubscribedAt }), 100);
  } else if (msg.type === 'downloads') {
    // Firmware download requests of every device, by HTTP status, and the bytes they carried.
    const byStatus: Record<number, number> = {};
    let bytes = 0;
    for (const d of fleet.devices) {
      for (const r of d.downloads) {
        byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
        bytes += r.bytes;
      }
    }
    send({ type: 'downloads', byStatus, bytes, firmware: fleet.devices.map((d) => d.firmware) });
  } else if (msg.type === 'report') {
    send({ type: 'received', entries: [...receivedAt] });
  } else if (msg.type === 'stop') {
    if (ticker) clearInterval(ticker);
    await fleet.stop(false);
    send({ type: 'stopped' });
    setTimeout(() => process.exit(0), 50);
  }
});
send({ type: 'ready', devices: fleet.devices.length });
