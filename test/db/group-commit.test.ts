import t from 'tap';
import { GroupCommit } from '../../src/db/group-commit.js';

// Group commit: what arrives together runs as one batch, within its bounds; a failure is its batch's only.

function recorder(opts: { maxBatch: number; maxInFlight: number; key?: (i: string) => string }) {
  const batches: string[][] = [];
  const gates: (() => void)[] = [];
  let held = false;
  const group = new GroupCommit<string, string>(async (items) => {
    batches.push(items);
    if (held) await new Promise<void>((resolve) => gates.push(resolve));
    if (items.includes('bad')) throw new Error('the statement failed');
    return items.map((i) => i.toUpperCase());
  }, opts);
  return {
    group,
    batches,
    hold: () => void (held = true),
    release: () => {
      held = false;
      gates.splice(0).forEach((g) => g());
    },
  };
}

t.test('requests made together share one batch, each gets its own answer', async (t) => {
  const r = recorder({ maxBatch: 100, maxInFlight: 2 });
  const out = await Promise.all(['a', 'b', 'c'].map((i) => r.group.submit(i)));
  t.same(out, ['A', 'B', 'C']);
  t.same(r.batches, [['a', 'b', 'c']]);
});

t.test('a batch holds at most maxBatch; what arrives while maxInFlight run waits for the next', async (t) => {
  const r = recorder({ maxBatch: 2, maxInFlight: 1 });
  r.hold();
  const first = Promise.all(['a', 'b', 'c'].map((i) => r.group.submit(i)));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(r.batches, [['a', 'b']], 'one batch of two runs; the third waits');
  const later = Promise.all(['d', 'e'].map((i) => r.group.submit(i)));
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(r.batches.length, 1, 'nothing else runs while the one allowed is in flight');
  r.release();
  t.same(await first, ['A', 'B', 'C']);
  t.same(await later, ['D', 'E']);
  t.same(r.batches, [['a', 'b'], ['c', 'd'], ['e']]);
});

t.test('requests with the same key never share a batch', async (t) => {
  const r = recorder({ maxBatch: 100, maxInFlight: 1, key: (i) => i[0]! });
  const out = await Promise.all(['x1', 'y1', 'x2', 'x3'].map((i) => r.group.submit(i)));
  t.same(out, ['X1', 'Y1', 'X2', 'X3']);
  t.same(r.batches, [['x1', 'y1'], ['x2'], ['x3']], 'in the order submitted, one per key in each');
});

t.test('a request waits for the running batch that holds its key, even with batches to spare', async (t) => {
  const r = recorder({ maxBatch: 100, maxInFlight: 4, key: (i) => i[0]! });
  r.hold();
  const out = Promise.all(['x1', 'x2', 'y1'].map((i) => r.group.submit(i)));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(r.batches, [['x1', 'y1']], 'x2 does not run beside x1 (its statement could commit first)');
  r.release();
  t.same(await out, ['X1', 'X2', 'Y1']);
  t.same(r.batches, [['x1', 'y1'], ['x2']], 'x2 ran after x1 finished');
});

t.test('a request the statement cannot take fails alone: the others of its batch are tried without it', async (t) => {
  const r = recorder({ maxBatch: 10, maxInFlight: 1 });
  const results = await Promise.allSettled(['a', 'bad', 'b'].map((i) => r.group.submit(i)));
  t.same(
    results.map((x) => x.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  t.same(
    results.map((x) => (x.status === 'fulfilled' ? x.value : (x.reason as Error).message)),
    ['A', 'the statement failed', 'B'],
  );
  t.same(r.batches, [['a', 'bad', 'b'], ['a'], ['bad'], ['b']], 'the batch, then each alone');
});
