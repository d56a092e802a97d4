import type { Client } from 'aedes';
import t from 'tap';
import { LocalSessionRegistry } from '../../src/cluster/routing.js';
import { PresenceTracker } from '../../src/device-gateway/presence-tracker.js';
import { MAX_HELLO_BATCH, Sessions } from '../../src/device-gateway/sessions.js';
import { createLogger } from '../../src/logger.js';
import type { CommandStatus, DeviceEventSink, HelloFacts } from '../../src/provisioning/channel.js';

const log = createLogger('silent');

/** A sink that records the calls and lets the test decide when a batch of hellos is done. */
function recordingSink() {
  const calls: { hellos: { mac: string; hello: HelloFacts }[][]; ready: string[][]; single: string[] } = { hellos: [], ready: [], single: [] };
  const release: (() => void)[] = [];
  let readyCalls = 0;
  let onReady: () => void = () => {};
  const sink: DeviceEventSink = {
    deviceReady: async (mac) => void calls.single.push(`ready ${mac}`),
    deviceHello: async (mac) => void calls.single.push(`hello ${mac}`),
    commandStatus: async (_mac: string, _id: string, _s: CommandStatus) => {},
    devicesHello: (batch) => {
      calls.hellos.push(batch);
      return new Promise<void>((resolve) => release.push(resolve));
    },
    devicesReady: async (macs) => {
      calls.ready.push(macs);
      readyCalls++;
      onReady();
    },
  };
  const readyAfter = (n: number) => new Promise<void>((resolve) => (onReady = () => readyCalls >= n && resolve()));
  return { sink, calls, release, readyAfter };
}

function sessionsWith(sink: DeviceEventSink) {
  const presence = new PresenceTracker(async () => {}, 1_000_000, log);
  const sessions = new Sessions(presence, () => '127.0.0.1', new LocalSessionRegistry('test'), log);
  sessions.setSink(sink);
  return sessions;
}

async function connected(sessions: Sessions, mac: string): Promise<Client> {
  const client = { id: mac, close: () => {} } as unknown as Client;
  await sessions.begin(client);
  sessions.opened(client);
  return client;
}

const hello = (configHash: string) => Buffer.from(JSON.stringify({ model: 'R29', firmware: '1.0', configHash }));
const macs = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `0C1107${(from + i).toString(16).toUpperCase().padStart(6, '0')}`);

t.test('hellos that arrive together reach the engine as one batch, then the devices are ready together', async (t) => {
  const { sink, calls, release, readyAfter } = recordingSink();
  const sessions = sessionsWith(sink);
  const group = macs(3);
  const clients = await Promise.all(group.map((m) => connected(sessions, m)));
  for (const c of clients) sessions.hello(c, hello('a'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  t.same(calls.hellos.map((b) => b.map((h) => h.mac)), [group], 'one batch with every hello');
  t.equal(calls.hellos[0]![0]!.hello.configHash, 'a'.repeat(64));
  t.same(calls.single, [], 'no hello one by one');
  t.equal(sessions.connectedSince(group[0]!), null, 'not ready before the engine has read the hellos');
  const ready = readyAfter(1);
  release.shift()!();
  await ready;
  t.same(calls.ready, [group], 'made ready in one call');
  for (const mac of group) t.type(sessions.connectedSince(mac), 'number', `${mac} gets its commands now`);
});

t.test('hellos arriving while batches are read gather into the next batch; a batch holds at most MAX_HELLO_BATCH', async (t) => {
  const { sink, calls, release, readyAfter } = recordingSink();
  const sessions = sessionsWith(sink);
  const first = macs(1, 0x100);
  const second = macs(1, 0x200);
  const later = macs(MAX_HELLO_BATCH + 2, 0x1000);
  const all = await Promise.all([...first, ...second, ...later].map((m) => connected(sessions, m)));
  sessions.hello(all[0]!, hello('b'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  sessions.hello(all[1]!, hello('b'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  t.equal(calls.hellos.length, 2, 'two batches in flight at once');
  for (const c of all.slice(2)) sessions.hello(c, hello('b'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  t.equal(calls.hellos.length, 2, 'the others wait for a batch to finish');
  const done = readyAfter(4);
  release.shift()!();
  release.shift()!();
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.same(calls.hellos.slice(2).map((b) => b.length), [MAX_HELLO_BATCH, 2], 'gathered, and split at the maximum');
  release.shift()!();
  release.shift()!();
  await done;
  t.equal(calls.ready.flat().length, all.length, 'every device ready once');
});

t.test('a device taken over while its hello was read is left to its new session', async (t) => {
  const { sink, calls, release, readyAfter } = recordingSink();
  const sessions = sessionsWith(sink);
  const [mac, other] = macs(2, 0x300);
  const old = await connected(sessions, mac!);
  const bystander = await connected(sessions, other!);
  sessions.hello(old, hello('c'.repeat(64)));
  sessions.hello(bystander, hello('c'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  await connected(sessions, mac!); // the takeover: a new connection for the same MAC
  const ready = readyAfter(1);
  release.shift()!();
  await ready;
  t.same(calls.ready, [[other]], 'only the session still current is made ready');
  t.equal(sessions.connectedSince(mac!), null, 'the new session waits for its own hello');
});

t.test('a batch the engine fails is tried device by device: only the device whose hello fails stays unready', async (t) => {
  const [bad, ...good] = macs(3, 0x400);
  const single: string[] = [];
  let readied = 0;
  let allReady: () => void = () => {};
  const done = new Promise<void>((r) => (allReady = r));
  const sink: DeviceEventSink = {
    devicesHello: async () => {
      throw new Error('a row of the batch was refused');
    },
    deviceHello: async (mac) => {
      single.push(`hello ${mac}`);
      if (mac === bad) throw new Error('this device row is refused');
    },
    deviceReady: async (mac) => {
      single.push(`ready ${mac}`);
      if (++readied === good.length) allReady();
    },
    commandStatus: async () => {},
  };
  const sessions = sessionsWith(sink);
  const clients = await Promise.all([bad!, ...good].map((m) => connected(sessions, m)));
  for (const c of clients) sessions.hello(c, hello('d'.repeat(64)));
  await done;
  t.same(single.filter((s) => s.startsWith('hello')).sort(), [bad!, ...good].map((m) => `hello ${m}`).sort(), 'each hello tried alone');
  t.same(single.filter((s) => s.startsWith('ready')).sort(), good.map((m) => `ready ${m}`).sort(), 'the others are ready');
  t.equal(sessions.connectedSince(bad!), null, 'the failing device waits for its grace period');
});
