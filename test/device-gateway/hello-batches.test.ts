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

/** Grace timers the test fires itself. */
function manualTimers() {
  const due: (() => void)[] = [];
  return { after: (_ms: number, fn: () => void) => void due.push(fn), fire: () => due.splice(0).forEach((fn) => fn()) };
}

function sessionsWith(sink: DeviceEventSink, timers = manualTimers()) {
  const presence = new PresenceTracker(async () => {}, 1_000_000, log);
  const sessions = new Sessions(presence, () => '127.0.0.1', new LocalSessionRegistry('test'), log, timers.after);
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
  let badReady: () => void = () => {};
  const served = new Promise<void>((r) => (badReady = r));
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
      if (mac === bad) badReady();
      else if (++readied === good.length) allReady();
    },
    commandStatus: async () => {},
  };
  const timers = manualTimers();
  const sessions = sessionsWith(sink, timers);
  const clients = await Promise.all([bad!, ...good].map((m) => connected(sessions, m)));
  for (const c of clients) sessions.hello(c, hello('d'.repeat(64)));
  await done;
  t.same(single.filter((s) => s.startsWith('hello')).sort(), [bad!, ...good].map((m) => `hello ${m}`).sort(), 'each hello tried alone');
  t.same(single.filter((s) => s.startsWith('ready')).sort(), good.map((m) => `ready ${m}`).sort(), 'the others are ready');
  t.equal(sessions.connectedSince(bad!), null, 'the failing device waits for its grace period');
  timers.fire();
  await served;
  t.ok(single.includes(`ready ${bad}`), 'then it is served as a device without a hello');
  t.type(sessions.connectedSince(bad!), 'number');
});

t.test('the hello grace period serves a device that sent no hello, not one whose hello waits in a batch', async (t) => {
  const { sink, calls, release, readyAfter } = recordingSink();
  const timers = manualTimers();
  const sessions = sessionsWith(sink, timers);
  const [waiting, silent] = macs(2, 0x500);
  const slow = await connected(sessions, waiting!);
  await connected(sessions, silent!);
  sessions.hello(slow, hello('e'.repeat(64)));
  await new Promise((r) => setImmediate(r));
  t.equal(calls.hellos.length, 1, 'the hello is being read (its batch is held)');
  timers.fire(); // the grace period ends while the batch is still being read (a storm)
  await new Promise((r) => setImmediate(r));
  t.same(calls.single, [`ready ${silent}`], 'only the device without a hello is served by the grace period');
  t.equal(sessions.connectedSince(waiting!), null, 'no commands before its hello is read');
  const ready = readyAfter(1);
  release.shift()!();
  await ready;
  t.same(calls.ready, [[waiting]], 'made ready once, by its batch');
  t.type(sessions.connectedSince(waiting!), 'number');
});
