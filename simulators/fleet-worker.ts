import { Fleet } from './fleet.js';

// One process of a benchmark fleet: a slice of MACs from one source address. The parent sends
// { type: 'configure', config } (over IPC: a slice of 18,000 MACs is too long for an environment variable),
// then { type: 'start' } to begin the storm, { type: 'report' } for the commands' arrival times,
// { type: 'held' } for the MACs subscribed now and { type: 'stop' } to end it; progress is reported over IPC.
export interface WorkerConfig {
  macs: string[];
  url: string;
  factorySecret: string | null;
  localAddress: string;
  type: string;
  hello: boolean;
  /** Configuration hashes by MAC: devices that already hold their configuration (a reboot storm). */
  configHashes?: Record<string, string>;
  /** Devices this process starts per second (absent: all at once). */
  startPerSecond?: number;
}

/** What a worker reports every 100 ms once started. */
export interface WorkerProgress {
  type: 'progress';
  online: number;
  /** Devices subscribed to their commands now (a device that drops leaves the count until it is back). */
  subscribed: number;
  /** Connection attempts answered with a CONNACK refusal, by return code. */
  refusals: Record<string, number>;
  /** Connection attempts that ended before any CONNACK, by the error seen (ECONNRESET, connack timeout, …). */
  failures: Record<string, number>;
  lastSubscribedAt: number;
}

const send = (m: unknown) => process.send?.(m);
const tally = (counts: Record<string, number>, key: string) => void (counts[key] = (counts[key] ?? 0) + 1);
let fleet: Fleet | null = null;
/** When each command id first reached a device of this process (for latency measurements). */
const receivedAt = new Map<string, number>();
const subscribedNow = new Set<string>();
const refusals: Record<string, number> = {};
const failures: Record<string, number> = {};
let lastSubscribedAt = 0;

function configure(config: WorkerConfig): Fleet {
  const f = new Fleet({
    macs: config.macs,
    type: config.type,
    url: config.url,
    localAddresses: [config.localAddress],
    hello: config.hello,
    configHashes: config.configHashes,
    ...(config.startPerSecond ? { ramp: { perTick: Math.max(1, Math.round(config.startPerSecond / 10)), tickMs: 100 } } : {}),
    keepaliveSeconds: 120,
    reconnect: { minMs: 500, maxMs: 10_000 },
    ...(config.factorySecret ? { factorySecret: config.factorySecret } : { key: null }),
  });
  for (const d of f.devices) {
    d.on('subscribed', () => {
      subscribedNow.add(d.opts.mac);
      lastSubscribedAt = Date.now();
    });
    d.on('offline', () => subscribedNow.delete(d.opts.mac));
    d.on('refused', (code: number) => tally(refusals, `CONNACK ${code}`));
    d.on('connect-failed', (reason: string) => tally(failures, reason));
    d.on('command', (c: { id: string }) => {
      if (!receivedAt.has(c.id)) receivedAt.set(c.id, Date.now());
    });
  }
  return f;
}

// A worker whose parent is gone (a benchmark that crashed or was killed) ends with it.
process.on('disconnect', () => process.exit(0));

let ticker: NodeJS.Timeout | null = null;
process.on('message', async (msg: { type: string; config?: WorkerConfig }) => {
  if (msg.type === 'configure') {
    fleet = configure(msg.config!);
    send({ type: 'ready', devices: fleet.devices.length });
    return;
  }
  if (!fleet) return;
  if (msg.type === 'start') {
    // Progress flows from the first device on, also while a ramped start is still starting devices.
    const progress = (): WorkerProgress => ({ type: 'progress', online: fleet!.counts().online, subscribed: subscribedNow.size, refusals, failures, lastSubscribedAt });
    ticker = setInterval(() => send(progress()), 100);
    await fleet.start();
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
  } else if (msg.type === 'held') {
    send({ type: 'held', macs: [...subscribedNow] });
  } else if (msg.type === 'stop') {
    if (ticker) clearInterval(ticker);
    await fleet.stop(false);
    send({ type: 'stopped' });
    setTimeout(() => process.exit(0), 50);
  }
});
