import t from 'tap';
import { createLogger } from '../../src/logger.js';
import { AnswerInbox } from '../../src/provisioning/answer-inbox.js';
import type { CommandStatus, DeviceEventSink, HelloFacts } from '../../src/provisioning/channel.js';
import { once } from '../helpers/service.js';

// The inbox's own rules, against a sink that records what reaches it and can be "away" (connection
// refused, as node-postgres reports it). The whole path against a real PostgreSQL: test/service-outage.test.ts.

class Store implements DeviceEventSink {
  away = false;
  readonly applied: string[] = [];
  refuse = new Set<string>();
  private call(entry: string): Promise<void> {
    if (this.away) return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
    if (this.refuse.has(entry)) return Promise.reject(new Error(`refused ${entry}`));
    this.applied.push(entry);
    return Promise.resolve();
  }
  deviceReady(mac: string) {
    return this.call(`${mac} ready`);
  }
  deviceHello(mac: string, _hello: HelloFacts) {
    return this.call(`${mac} hello`);
  }
  commandStatus(mac: string, jobId: string, status: CommandStatus) {
    return this.call(`${mac} ${jobId} ${status.state}`);
  }
}

const log = createLogger('silent');
const retry = { minMs: 4, maxMs: 16 };
const ok: CommandStatus = { state: 'succeeded' };

t.test('what devices say while the store is away is applied when it is back, in order, once', async (t) => {
  const store = new Store();
  const inbox = new AnswerInbox(store, { log, retry });
  store.away = true;
  const retrying = once(inbox, 'retrying');
  const all = Promise.all([
    inbox.deviceHello('A', {}),
    inbox.commandStatus('A', 'j1', { state: 'accepted' }),
    inbox.commandStatus('B', 'j2', ok),
    inbox.commandStatus('A', 'j1', ok),
    inbox.deviceReady('A'),
  ]);
  await retrying;
  // Several retries fail while away; none applies anything.
  for (let i = 0; i < 3; i++) await once(inbox, 'retrying');
  t.same(store.applied, []);
  t.equal(inbox.waiting, 5);
  store.away = false;
  await all;
  t.same(store.applied.filter((e) => e.startsWith('A')), ['A hello', 'A j1 accepted', 'A j1 succeeded', 'A ready'], "one device's items in the order it sent them");
  t.same(store.applied.filter((e) => e.startsWith('B')), ['B j2 succeeded']);
  t.equal(store.applied.length, 5, 'each applied once');
  t.equal(inbox.waiting, 0);
});

t.test('bounded: past the per-device or total bound the oldest waiting item is dropped and counted', async (t) => {
  const store = new Store();
  const dropped: string[] = [];
  const inbox = new AnswerInbox(store, { log, retry, maxPerDevice: 2, maxTotal: 3, metrics: { waiting: { set: () => {} }, dropped: { inc: ({ reason }) => void dropped.push(reason) } } });
  store.away = true;
  const drops: { mac: string; what: string; reason: string }[] = [];
  inbox.on('dropped', (d) => drops.push(d));
  const first = inbox.commandStatus('A', 'j1', ok);
  await once(inbox, 'retrying');
  // A holds j1 (waiting for the store) and j2: j3 makes room by dropping A's oldest, j1.
  const more = [inbox.commandStatus('A', 'j2', ok), inbox.commandStatus('A', 'j3', ok)];
  t.same(drops.map((d) => [d.what, d.reason]), [['status of j1', 'device_full']]);
  // The inbox holds 3 (j2, j3, k1): C's item makes room by dropping the oldest of all, j2.
  more.push(inbox.commandStatus('B', 'k1', ok), inbox.commandStatus('C', 'm1', ok));
  t.same(drops.map((d) => [d.what, d.reason]), [['status of j1', 'device_full'], ['status of j2', 'inbox_full']]);
  t.same(dropped, ['device_full', 'inbox_full'], 'counted by reason');
  t.equal(inbox.waiting, 3);
  store.away = false;
  await Promise.all([first, ...more]);
  t.same(store.applied.sort(), ['A j3 succeeded', 'B k1 succeeded', 'C m1 succeeded'], 'the rest applied once the store is back');
});

t.test('an item the store refuses for good is not retried and does not hold the device back', async (t) => {
  const store = new Store();
  const inbox = new AnswerInbox(store, { log, retry });
  store.refuse.add('A j1 succeeded');
  const refused = inbox.commandStatus('A', 'j1', ok).then(
    () => 'applied',
    (err: Error) => err.message,
  );
  await inbox.commandStatus('A', 'j2', ok);
  t.equal(await refused, 'refused A j1 succeeded');
  t.same(store.applied, ['A j2 succeeded']);
});

/** A store that takes hellos in batches, held open until the test lets the batch finish. */
class BatchStore extends Store {
  release!: () => void;
  fail = false;
  readonly batches: string[][] = [];
  devicesHello(batch: { mac: string; hello: HelloFacts }[]) {
    this.batches.push(batch.map((b) => b.mac));
    return new Promise<void>((resolve, reject) => {
      this.release = () => {
        if (this.fail) return reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }));
        for (const b of batch) this.applied.push(`${b.mac} hello`);
        resolve();
      };
    });
  }
}

t.test('a batch of hellos goes in one call; what a device says meanwhile waits behind its hello', async (t) => {
  const store = new BatchStore();
  const inbox = new AnswerInbox(store, { log, retry });
  const batch = inbox.devicesHello([{ mac: 'A', hello: {} }, { mac: 'B', hello: {} }]);
  const later = inbox.commandStatus('A', 'j1', ok);
  t.same(store.batches, [['A', 'B']], 'one call for the batch');
  t.same(store.applied, [], 'the answer did not pass the hello still being applied');
  store.release();
  await Promise.all([batch, later]);
  t.same(store.applied, ['A hello', 'B hello', 'A j1 succeeded'], 'in the order the device said them');
  t.equal(inbox.waiting, 0);
});

t.test('a batch that fails is applied one by one, retried while the store is away', async (t) => {
  const store = new BatchStore();
  const inbox = new AnswerInbox(store, { log, retry });
  const batch = inbox.devicesHello([{ mac: 'A', hello: {} }, { mac: 'B', hello: {} }]);
  const later = inbox.commandStatus('B', 'j2', ok);
  store.fail = true;
  store.release();
  await Promise.all([batch, later]);
  t.same(store.applied, ['A hello', 'B hello', 'B j2 succeeded'], 'each hello once, before what followed it');
  t.equal(inbox.waiting, 0);
});
