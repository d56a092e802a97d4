import t from 'tap';
import { PresenceTracker } from '../../src/device-gateway/presence-tracker.js';
import type { PresenceUpdate } from '../../src/devices/presence.js';
import { createLogger } from '../../src/logger.js';

const log = createLogger('silent');
const update = (mac: string): PresenceUpdate => ({ mac, seenAt: new Date(), status: 'online' });
/** An error as drizzle throws it: the driver's error, with its SQLSTATE, as the cause. */
const dbError = (code: string) => Object.assign(new Error('Failed query'), { cause: Object.assign(new Error('refused'), { code }) });

t.test('a row the database refuses is dropped alone; every other row of the batch is written', async (t) => {
  const written: string[] = [];
  const tracker = new PresenceTracker(
    async (batch) => {
      if (batch.some((u) => u.mac === 'BAD000000000')) throw dbError('22P05');
      written.push(...batch.map((u) => u.mac));
    },
    1_000_000,
    log,
  );
  const macs = Array.from({ length: 9 }, (_, i) => `0C110500000${i}`);
  for (const mac of [...macs.slice(0, 4), 'BAD000000000', ...macs.slice(4)]) tracker.mark(update(mac));
  await tracker.flush();
  t.same(written.sort(), macs.sort());
  written.length = 0;
  tracker.mark(update('0C1105000100'));
  await tracker.flush();
  t.same(written, ['0C1105000100'], 'the refused row is not retried with the next batch');
});

t.test('a database that cannot be reached keeps the whole batch for the next flush', async (t) => {
  let down = true;
  const written: string[] = [];
  const tracker = new PresenceTracker(
    async (batch) => {
      if (down) throw dbError('ECONNREFUSED');
      written.push(...batch.map((u) => u.mac));
    },
    1_000_000,
    log,
  );
  tracker.mark(update('0C1105000001'));
  tracker.mark(update('0C1105000002'));
  await tracker.flush();
  t.same(written, []);
  down = false;
  await tracker.flush();
  t.same(written.sort(), ['0C1105000001', '0C1105000002']);
});

t.test('flushed() waits for what was marked while a flush was under way, not only for that flush', async (t) => {
  const written: string[] = [];
  let release!: () => void;
  const first = new Promise<void>((r) => (release = r));
  let calls = 0;
  const tracker = new PresenceTracker(
    async (batch) => {
      if (++calls === 1) await first; // the first batch is still being written when the next change comes
      written.push(...batch.map((u) => u.mac));
    },
    1_000_000,
    log,
  );
  tracker.mark(update('0C1105000001'));
  const underWay = tracker.flush();
  tracker.mark(update('0C1105000002'));
  const done = tracker.flushed();
  release();
  await Promise.all([underWay, done]);
  t.same(written, ['0C1105000001', '0C1105000002'], 'both changes are written when flushed() resolves');
});

t.test('a connect whose write failed is written with the next batch even when the device said hello since', async (t) => {
  let fail = true;
  const written: PresenceUpdate[] = [];
  let release: () => void = () => {};
  const writing = new Promise<void>((r) => (release = r));
  const tracker = new PresenceTracker(
    async (batch) => {
      if (fail) {
        fail = false;
        await writing; // the hello arrives while this write is under way, then the write fails
        throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
      }
      written.push(...batch);
    },
    1_000_000,
    log,
  );
  const connectedAt = new Date();
  tracker.mark({ mac: '0C1105000200', seenAt: connectedAt, status: 'online', epoch: 7, connectedAt });
  const first = tracker.flush();
  tracker.mark({ mac: '0C1105000200', seenAt: new Date(), model: 'R29', firmware: '1.0' }); // the hello
  release();
  await first;
  await tracker.flush();
  t.equal(written.length, 1);
  t.match(written[0], { mac: '0C1105000200', status: 'online', epoch: 7, connectedAt, model: 'R29', firmware: '1.0' }, 'the connect and the hello, together');
});
