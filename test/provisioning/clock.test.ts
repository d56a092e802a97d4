import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { Redis } from 'ioredis';
import t from 'tap';
import { z } from 'zod';
import { openDatabase, runMigrations } from '../../src/db/client.js';
import type { DeviceService } from '../../src/devices/service.js';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { createLogger } from '../../src/logger.js';
import type { CommandChannel, DeviceCommand } from '../../src/provisioning/channel.js';
import { ProvisioningEngine } from '../../src/provisioning/engine.js';
import { JobEventFollower } from '../../src/provisioning/job-events.js';
import { provisioningKinds } from '../../src/provisioning/job-kinds.js';
import { JobStore } from '../../src/provisioning/job-store.js';
import { JobKinds } from '../../src/provisioning/kinds.js';
import { eventOf, recordJobEvents } from '../helpers/job-events.js';
import { createTestDatabase } from '../helpers/service.js';

// The job machine on an injected clock: a whole lifecycle (created, dispatched, redelivered after the
// answer deadline, accepted, succeeded; another job expired) with no wall-clock wait. The clock starts
// years ahead: a transition stamped by anything but the injected clock would show.

const url = await createTestDatabase(t);
const database = await openDatabase({ url, dataDir: '/tmp' });
t.teardown(() => database.close());
await runMigrations(database);
let clock = Date.UTC(2031, 0, 1);
const now = () => clock;
const advance = (ms: number) => void (clock += ms);

const mac = '0C1105C10001';
const installerId = '00000000-0000-4000-8000-0000000000c1';
let connected: number | null = null;
const published = new EventEmitter<{ command: [DeviceCommand] }>();
const channel: CommandChannel = {
  connectedSince: async () => connected,
  publish: async (_mac, command) => void published.emit('command', command),
};
// The engine asks only these two of the device records.
const devices = {
  getRecord: async () => ({ mac, installerId }),
  exchangeConfigHash: async () => ({ previous: null, installerId }),
} as unknown as DeviceService;

const store = new JobStore(database, now);
const kinds = new JobKinds();
kinds.register(provisioningKinds(null as never, store, now, devices).find((k) => k.kind === 'reboot')!);
// A kind the machine has never heard of, with a typed result: registering it is all it takes.
kinds.register({ kind: 'signal-check', command: async () => ({ params: {} }), result: z.strictObject({ rssi: z.number().int().min(-120).max(0) }) });
const redis = new Redis({ maxRetriesPerRequest: null });
const queuePrefix = `ictest-clock-${randomBytes(4).toString('hex')}`;
const logger = createLogger('warn');
const engine = new ProvisioningEngine({
  store,
  redis,
  devices,
  kinds,
  channel,
  logger,
  queuePrefix,
  policy: { ackTimeoutMs: 30_000, maxAckBackoffMs: 60_000, inProgressTimeoutMs: 600_000, maxAttempts: 5 },
  concurrency: 2,
  queueTimeoutMs: 5000,
  reconcileIntervalMs: 3600_000,
  now,
});
const follower = new JobEventFollower({ database, log: logger, listenUrl: url });
t.teardown(async () => {
  await follower.stop();
  await engine.stop();
  await deleteKeysUnder(redis, queuePrefix);
  redis.disconnect();
});
await engine.start();
follower.start();
const events = recordJobEvents(t, follower);
const jobRow = async (id: string) => (await database.run<any>({ name: 't_job', text: 'SELECT state, attempts, delivered_at, finished_at FROM jobs WHERE id = $1' }, [id]))[0];

t.test('a whole lifecycle, the clock moved by hand', async (t) => {
  connected = clock;
  const [job] = await engine.create(store.db, { accountId: null, label: 'test' }, [{ kind: 'reboot', mac, installerId, expiresAt: new Date(clock + 3600_000) }]);
  const created = clock;
  t.equal((await events.next(eventOf(job!.id, 'queued', 'created'))).at.getTime(), created, 'created at the injected instant');

  const first = once(published, 'command');
  await engine.enqueue([job!.id]);
  t.equal(((await first)[0] as DeviceCommand).id, job!.id, 'delivered');
  const dispatched = await events.next(eventOf(job!.id, 'dispatched', 'dispatched'));
  t.equal(dispatched.at.getTime(), clock);

  advance(30_001); // past the answer deadline of the first delivery
  const second = once(published, 'command');
  await engine.wake(mac);
  await second;
  const redelivered = await events.next(eventOf(job!.id, 'dispatched', 'redelivered'));
  t.match(redelivered, { attempts: 2, at: new Date(clock) }, 'redelivered once the clock passed the deadline');

  advance(1000);
  await engine.commandStatus(mac, job!.id, { state: 'accepted' });
  t.match(await events.next(eventOf(job!.id, 'in-progress', 'progress')), { at: new Date(clock), actor: 'device' });
  advance(1000);
  await engine.commandStatus(mac, job!.id, { state: 'succeeded' });
  const done = await events.next(eventOf(job!.id, 'succeeded', 'finished'));
  t.equal(done.at.getTime(), clock);
  const row = await jobRow(job!.id);
  t.equal(row.finished_at.getTime(), clock, 'the job row finished on the same clock');
  t.equal(row.delivered_at.getTime(), redelivered.at.getTime(), 'delivered on the same clock');
});

t.test('a job of a device away expires when the injected clock passes its expiry', async (t) => {
  connected = null;
  const [job] = await engine.create(store.db, { accountId: null, label: 'test' }, [{ kind: 'reboot', mac, installerId, expiresAt: new Date(clock + 60_000) }]);
  await engine.enqueue([job!.id]);
  advance(60_000);
  await engine.wake(mac);
  const expired = await events.next(eventOf(job!.id, 'expired', 'finished'));
  t.match(expired, { fromState: 'queued', error: { code: 'expired' }, actor: 'engine', at: new Date(clock) });
  t.equal((await jobRow(job!.id)).state, 'expired');
});

t.test("a kind's typed result is stored with the job and carried by its event; one that does not fit is dropped", async (t) => {
  connected = clock;
  for (const [result, stored] of [
    [{ rssi: -61 }, { rssi: -61 }],
    [{ rssi: 'strong' }, null],
  ] as const) {
    const [job] = await engine.create(store.db, { accountId: null, label: 'test' }, [{ kind: 'signal-check', mac, installerId, expiresAt: new Date(clock + 3600_000) }]);
    const delivered = once(published, 'command');
    await engine.enqueue([job!.id]);
    await delivered;
    await events.next(eventOf(job!.id, 'dispatched', 'dispatched'));
    await engine.commandStatus(mac, job!.id, { state: 'succeeded', result: result as Record<string, unknown> });
    const done = await events.next(eventOf(job!.id, 'succeeded', 'finished'));
    t.same(done.result, stored, `the event carries ${JSON.stringify(stored)}`);
    const row = await database.run<any>({ name: 't_job_result', text: 'SELECT result FROM jobs WHERE id = $1' }, [job!.id]);
    t.same(row[0].result, stored, 'and so does the job');
  }
});
