import type { BenchFleet, FleetProgress } from './fleet.js';
import { cpuSeconds, rssBytes, sleep } from './proc.js';

/** One measured process of a storm (a broker, or one process of a cluster). */
export interface ProcessUse {
  pid: number;
  rssBefore: number;
  rssAfter: number;
  cpuSeconds: number;
}

export interface StormResult {
  devices: number;
  /** Devices subscribed at the end of the storm. */
  held: number;
  /** How the storm ended: every device held (and online via the API), the timeout, or no progress for the stall time. */
  endedBy: 'all held' | 'timeout' | 'stalled';
  /** Storm start until the last device subscribed (every device when endedBy is 'all held'). */
  connectSeconds: number;
  onlineViaApiSeconds: number | null;
  /** Devices online through the API at the end (null: not asked). */
  onlineViaApi: number | null;
  /** Devices held per second of connectSeconds. */
  connectsPerSecond: number;
  fleet: FleetProgress;
  /** Subscribed devices over time since the storm's start: [ms, count], sampled as the workers report (every 100 ms). */
  timeline: [number, number][];
  processes: ProcessUse[];
}

/** Seconds from the storm's start until `count` devices were subscribed at once; null if they never were. */
export function secondsToHold(r: StormResult, count: number): number | null {
  const at = r.timeline.find(([, n]) => n >= count);
  return at ? at[0] / 1000 : null;
}

/**
 * Starts a fleet created with `start: false` all at once and follows it until every device is subscribed
 * (and, with `apiOnline`, online through the API), `timeoutMs` passed, or neither count grew for `stallMs`
 * (a broker that cannot hold the fleet: its refusals and failures are in the result). Measures RSS and CPU
 * of `pids` from before the start until a settling pause after the end.
 */
export async function storm(fleet: BenchFleet, opts: { devices: number; pids: number[]; apiOnline?: () => Promise<number>; timeoutMs: number; stallMs: number; log?: (...a: unknown[]) => void }): Promise<StormResult> {
  const N = opts.devices;
  await sleep(1000);
  const before = opts.pids.map((pid) => ({ pid, rss: rssBytes(pid), cpu: cpuSeconds(pid) }));
  const t0 = fleet.start();
  const timeline: [number, number][] = [[0, 0]];
  let progressAt = t0;
  // Sampled apart from the API polls (slow under load), at the pace the workers report (100 ms).
  const sample = () => {
    const subscribed = fleet.subscribed();
    if (subscribed <= timeline[timeline.length - 1]![1]) return;
    progressAt = Date.now();
    timeline.push([progressAt - t0, subscribed]);
  };
  const sampler = setInterval(sample, 25);
  let onlineViaApiSeconds: number | null = null;
  let onlineViaApi: number | null = null;
  let endedBy: StormResult['endedBy'] = 'timeout';
  let lastReport = t0;
  let askedApiAt = 0;
  for (;;) {
    // The API is asked once a second until nearly every device is held, then as fast as it answers: its
    // device list costs PostgreSQL ~20 ms a call at 19,000 devices, work the references are not given.
    const nearlyAll = fleet.subscribed() >= N * 0.99;
    if (opts.apiOnline && onlineViaApiSeconds === null && (nearlyAll || Date.now() - askedApiAt >= 1000)) {
      askedApiAt = Date.now();
      const online = await opts.apiOnline().catch(() => onlineViaApi ?? 0);
      if (online > (onlineViaApi ?? 0)) progressAt = Date.now();
      onlineViaApi = online;
      if (online >= N) onlineViaApiSeconds = (Date.now() - t0) / 1000;
    }
    sample();
    const now = Date.now();
    if (fleet.subscribed() >= N && (!opts.apiOnline || onlineViaApiSeconds !== null)) {
      endedBy = 'all held';
      break;
    }
    if (now - t0 >= opts.timeoutMs) break;
    if (now - progressAt >= opts.stallMs) {
      endedBy = 'stalled';
      break;
    }
    if (opts.log && now - lastReport >= 10_000) {
      lastReport = now;
      const p = fleet.progress();
      opts.log(`  ${((now - t0) / 1000).toFixed(0)} s: ${p.subscribed} subscribed${onlineViaApi === null ? '' : `, ${onlineViaApi} online via API`}, ${p.refused} refusals, ${p.failed} failed attempts${p.failed ? ` (${Object.entries(p.failures).map(([why, n]) => `${why}: ${n}`).join(', ')})` : ''}`);
    }
    await sleep(50);
  }
  clearInterval(sampler);
  const lastSubscribedAt = fleet.progress().lastSubscribedAt;
  if (endedBy !== 'all held') opts.log?.(`storm ${endedBy === 'stalled' ? `stalled (no progress for ${opts.stallMs / 1000} s)` : 'timed out'}: ${fleet.subscribed()} of ${N} subscribed`);
  const connectSeconds = ((lastSubscribedAt || Date.now()) - t0) / 1000;
  await sleep(5000); // let the brokers settle (and collect garbage) before measuring memory
  const processes = before.map((b) => ({ pid: b.pid, rssBefore: b.rss, rssAfter: rssBytes(b.pid), cpuSeconds: cpuSeconds(b.pid) - b.cpu }));
  if (opts.apiOnline && onlineViaApiSeconds === null) onlineViaApi = await opts.apiOnline().catch(() => onlineViaApi);
  const end = fleet.progress();
  return { devices: N, held: end.subscribed, endedBy, connectSeconds, onlineViaApiSeconds, onlineViaApi, connectsPerSecond: end.subscribed / connectSeconds, fleet: end, timeline, processes };
}
