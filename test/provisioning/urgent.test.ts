import t from 'tap';
import { AccountService } from '../../src/accounts/service.js';
import type { JobKindHandler } from '../../src/provisioning/kinds.js';
import { eventOf, recordJobEvents } from '../helpers/job-events.js';
import { startTestService, waitFor } from '../helpers/service.js';

// An urgent kind (the next issue's door opening) runs in a lane of its own beside the device's queue: a
// job of it made for a connected device is delivered at once, while a slow job is still in progress, and
// recorded all the same (created, dispatched, finished; audit rows and job events).

const urgentKind: JobKindHandler = { kind: 'door-test', urgent: true, command: async (job) => ({ params: { relay: job.params.relay } }) };
const svc = await startTestService(t, {}, { kinds: [urgentKind] });
const { token } = await svc.createInstaller();
const principal = (await new AccountService(svc.service.database.db).authenticate(token))!;
const events = recordJobEvents(t, svc.service.jobEvents);
const jobState = async (id: string) => (await svc.api('GET', `/api/v1/jobs/${id}`, { token })).body.state as string;
const auditOf = async (id: string) => (await svc.api('GET', `/api/v1/audit?jobId=${id}&pageSize=50`, { token })).body.items.map((e: { action: string }) => e.action) as string[];

t.test('an urgent job is delivered and succeeds while the slow job ahead of it is in progress', async (t) => {
  const mac = '0C1105A0E001';
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { holdKinds: ['autop-once'], plainKinds: ['door-test'] } });
  device.start();
  await waitFor(() => device.applications.length, (n) => n >= 1); // boot provisioning

  const slow = (await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Slow.Marker = 1' } })).body.job;
  await events.next(eventOf(slow.id, 'in-progress', 'progress'));
  t.same(device.holding, [slow.id], 'the device holds the one-time Autop in progress');

  const { answer } = await svc.service.provisioning.requestJob({ principal }, mac, 'door-test', { relay: 1 });
  const urgent = answer.job;
  // The request delivered it itself (the fast path), before answering: no twin had to be taken first.
  t.not(await jobState(urgent.id), 'queued', 'delivered by the time the request answered');
  const done = await events.next(eventOf(urgent.id, 'succeeded', 'finished'));
  t.equal(done.actor, 'device', 'finished by the device answer, matched by its id');
  t.equal(await jobState(slow.id), 'in-progress', 'the slow job is still in progress');
  t.same(device.holding, [slow.id], 'and still held by the device');
  t.ok(device.applications.some((a) => a.id === urgent.id), 'the device carried out the urgent command');

  const types = events.events.filter((e) => e.jobId === urgent.id).map((e) => `${e.type}:${e.toState}`);
  t.same(types.filter((x) => x !== 'progress:in-progress'), ['created:queued', 'dispatched:dispatched', 'finished:succeeded'], 'its events, in order');
  const audit = await auditOf(urgent.id);
  for (const action of ['job.created', 'job.dispatched', 'job.succeeded']) t.ok(audit.includes(action), `audited: ${action}`);
  const [row] = await svc.sql('SELECT urgent FROM jobs WHERE id = $1', [urgent.id]);
  t.equal(row.urgent, true, 'recorded as urgent');

  t.ok(device.release(slow.id));
  await events.next(eventOf(slow.id, 'succeeded', 'finished'));
  t.equal(device.received.filter((c) => c.id === urgent.id).length, 1, 'the urgent command was delivered once');
  await device.stop();
});

t.test('an urgent job for a device not connected waits in its lane and is delivered when the device is ready', async (t) => {
  const mac = '0C1105A0E002';
  await svc.addDevice(token, mac);
  const { answer } = await svc.service.provisioning.requestJob({ principal }, mac, 'door-test', { relay: 2 });
  const urgent = answer.job;
  t.equal(await jobState(urgent.id), 'queued', 'recorded, not delivered: nobody to deliver it to');

  const device = svc.device(mac, { behaviour: { plainKinds: ['door-test'] } });
  device.start();
  await events.next(eventOf(urgent.id, 'succeeded', 'finished'));
  t.equal(device.received.filter((c) => c.id === urgent.id).length, 1, 'delivered once the device was ready');
  await device.stop();
});

t.test('a device has one urgent job in flight: the next urgent one waits for it, not for the queue', async (t) => {
  const mac = '0C1105A0E004';
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { holdKinds: ['door-test'], plainKinds: ['door-test'] } });
  device.start();
  await waitFor(() => device.applications.length, (n) => n >= 1); // boot provisioning
  const first = (await svc.service.provisioning.requestJob({ principal }, mac, 'door-test', { relay: 1 })).answer.job;
  await events.next(eventOf(first.id, 'in-progress', 'progress'));
  const second = (await svc.service.provisioning.requestJob({ principal }, mac, 'door-test', { relay: 2 })).answer.job;
  t.equal(await jobState(second.id), 'queued', 'the second waits behind the first urgent job');
  t.notOk(device.received.some((c) => c.id === second.id), 'not delivered yet');
  t.ok(device.release(first.id));
  await events.next(eventOf(first.id, 'succeeded', 'finished'));
  await waitFor(() => device.holding, (h) => h.includes(second.id));
  t.ok(device.release(second.id));
  await events.next(eventOf(second.id, 'succeeded', 'finished'));
  await device.stop();
});

t.test('a kind that is not registered is refused', async (t) => {
  const mac = '0C1105A0E003';
  await svc.addDevice(token, mac);
  await t.rejects(svc.service.provisioning.requestJob({ principal }, mac, 'door-nope', {}), { code: 'unknown_kind' });
});
