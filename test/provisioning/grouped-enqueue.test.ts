import t from 'tap';
import { QueueUnavailableError } from '../../src/provisioning/engine.js';
import { GroupedEnqueue } from '../../src/provisioning/grouped-enqueue.js';

/** A queue that records each group it is given and answers it when told to. */
function recordingQueue() {
  const groups: { ids: string[]; resolve(): void; reject(err: unknown): void }[] = [];
  const enqueue = (ids: string[]) => new Promise<void>((resolve, reject) => void groups.push({ ids, resolve, reject }));
  return { groups, enqueue };
}
const tick = () => new Promise((r) => setImmediate(r));

t.test('the requests of one tick share one enqueue; the next tick makes the next group', async (t) => {
  const q = recordingQueue();
  const grouped = new GroupedEnqueue(q.enqueue);
  const first = [grouped.add(['a']), grouped.add(['b', 'c']), grouped.add(['d'])];
  t.equal(q.groups.length, 0, 'nothing is sent before the tick ends');
  await tick();
  t.same(q.groups.map((g) => g.ids), [['a', 'b', 'c', 'd']], 'one group with every id of the tick, in order');
  const second = grouped.add(['e']);
  await tick();
  t.same(q.groups.map((g) => g.ids), [['a', 'b', 'c', 'd'], ['e']], 'a later request is sent without waiting for the first group');
  let settled = 0;
  for (const p of first) void p.then(() => settled++);
  q.groups[1]!.resolve();
  await second;
  t.equal(settled, 0, 'each request waits for its own group');
  q.groups[0]!.resolve();
  await Promise.all(first);
  t.equal(settled, 3);
  t.same([grouped.groups, grouped.grouped], [2, 5]);
  t.equal(await grouped.add([]), undefined, 'no ids, no group');
  t.equal(q.groups.length, 2);
});

t.test('a group the queue refused fails each of its requests with the queue error (503 for each)', async (t) => {
  const q = recordingQueue();
  const grouped = new GroupedEnqueue(q.enqueue);
  const requests = [grouped.add(['a']), grouped.add(['b'])];
  await tick();
  q.groups[0]!.reject(new QueueUnavailableError('the queue did not take the jobs'));
  for (const r of requests) await t.rejects(r, QueueUnavailableError);
  const next = grouped.add(['c']);
  await tick();
  q.groups[1]!.resolve();
  await t.resolves(next, 'the next group is sent as usual');
});
