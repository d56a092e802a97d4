import t, { type Test } from 'tap';
import type { JobEvent } from '../../src/provisioning/job-events.js';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { eventOf, recordJobEvents } from '../helpers/job-events.js';
import { once, startTestService, waitFor } from '../helpers/service.js';

// Every kind of job transition, through the public API and a simulated device: each leaves its audit row
// and its outbox event, written by the one statement that made it (same instant, same actor).

const svc = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '300', JOB_MAX_ATTEMPTS: '2' });
const installer = await svc.createInstaller();
const { token } = installer;
const events = recordJobEvents(t, svc.service.jobEvents);
let n = 0x700;
const newMac = () => `0C11050${(n++).toString(16).toUpperCase().padStart(5, '0')}`;
const api = (method: string, path: string, body?: unknown) => svc.api(method, path, { token, body });

/** The event of the job's transition into `toState`, and the audit row `action` written with it. */
async function transition(t: Test, jobId: string, toState: string, type: JobEvent['type'], action: string): Promise<JobEvent> {
  const event = await events.next(eventOf(jobId, toState, type), 30_000).catch((err) => {
    console.error(JSON.stringify(events.events.filter((e) => e.jobId === jobId)));
    throw err;
  });
  const rows = await svc.sql<{ at: Date; actor: string; details: any }>('SELECT at, actor, details FROM audit_log WHERE job_id = $1 AND action = $2 ORDER BY at', [jobId, action]);
  const row = rows.find((r) => r.at.getTime() === event.at.getTime());
  t.ok(row, `${action}: its audit row carries the event's instant`);
  t.equal(row?.actor, event.actor, `${action}: by the same actor`);
  return event;
}

async function offlineDevice(): Promise<string> {
  const mac = newMac();
  await svc.addDevice(token, mac);
  return mac;
}

t.test('created, dispatched and succeeded', async (t) => {
  const mac = await offlineDevice();
  const job = (await api('POST', `/api/v1/devices/${mac}/reboot`)).body.job;
  const created = await transition(t, job.id, 'queued', 'created', 'job.created');
  t.match(created, { fromState: null, kind: 'reboot', mac, actor: `account:${installer.id}` });
  const device = svc.device(mac);
  device.start();
  t.match(await transition(t, job.id, 'dispatched', 'dispatched', 'job.dispatched'), { fromState: 'queued', attempts: 1, actor: 'engine' });
  // Its `accepted` answer may be applied after its `succeeded` one (then it changes nothing): not asserted here.
  const done = await transition(t, job.id, 'succeeded', 'finished', 'job.succeeded');
  t.match(done, { progress: 100, actor: 'device' });
  t.ok(done.deliveredAt, 'the finish carries when it was delivered (the answer time is measured from it)');
  await device.stop();
});

t.test('accepted and progress, with its stage changes: an upgrade', async (t) => {
  const fw = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.202', image: Buffer.alloc(200_000, 5) })).body;
  const mac = newMac();
  const device = await knownDevice(svc, token, mac, { model: 'R29', firmware: '29.30.10.112', reconnect: { minMs: 50, maxMs: 100 } });
  const upgrade = (await api('POST', '/api/v1/upgrades', { firmwareId: fw.id, macs: [mac] })).body;
  const jobId = upgrade.deviceStates[0].jobId;
  const accepted = await transition(t, jobId, 'in-progress', 'progress', 'job.progress');
  t.match(accepted, { fromState: 'dispatched', actor: 'device' });
  const installing = await events.next((e) => e.jobId === jobId && e.type === 'progress' && e.stage === 'installing');
  t.match(installing, { fromState: 'in-progress', toState: 'in-progress' });
  const audited = await svc.sql('SELECT details FROM audit_log WHERE job_id = $1 AND action = $2 AND at = $3', [jobId, 'job.progress', installing.at]);
  t.match(audited, [{ details: { stage: 'installing' } }], 'the stage change is audited');
  t.match(await transition(t, jobId, 'succeeded', 'finished', 'job.succeeded'), { actor: 'device' });
  await device.stop();
});

t.test('redelivered when the device does not answer, failed when it never does', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { dropAcks: 100 } });
  device.start();
  await once(device, 'online');
  const job = (await api('POST', `/api/v1/devices/${mac}/reboot`)).body.job;
  t.match(await transition(t, job.id, 'dispatched', 'redelivered', 'job.redelivered'), { attempts: 2, actor: 'engine' });
  const failed = await transition(t, job.id, 'failed', 'finished', 'job.failed');
  t.match(failed, { fromState: 'dispatched', error: { code: 'no_answer' }, actor: 'engine' });
  await device.stop();
});

t.test("failed by the device's answer", async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { failKinds: ['reboot'] } });
  device.start();
  await once(device, 'online');
  const job = (await api('POST', `/api/v1/devices/${mac}/reboot`)).body.job;
  t.match(await transition(t, job.id, 'failed', 'finished', 'job.failed'), { error: { code: 'simulated_failure' }, actor: 'device' });
  await device.stop();
});

t.test('canceled by request', async (t) => {
  const mac = await offlineDevice();
  const job = (await api('POST', `/api/v1/devices/${mac}/reboot`)).body.job;
  t.equal((await api('DELETE', `/api/v1/jobs/${job.id}`)).status, 200);
  t.match(await transition(t, job.id, 'canceled', 'finished', 'job.canceled'), { fromState: 'queued', error: { code: 'canceled' }, actor: `account:${installer.id}` });
});

t.test('canceled by a reset: the one-time Autop not yet applied ends', async (t) => {
  const mac = await offlineDevice();
  const once = (await api('POST', `/api/v1/devices/${mac}/autop/once`, { commands: 'Config.Reset.Test = 1' })).body.job;
  const reset = await api('POST', `/api/v1/devices/${mac}/reset`, { mode: 'factory' });
  t.same(reset.body.canceledOneTimeJobs, [once.id]);
  t.match(await transition(t, once.id, 'canceled', 'finished', 'job.canceled'), { kind: 'autop-once', error: { code: 'reset' } });
  await api('DELETE', `/api/v1/jobs/${reset.body.job.id}`);
});

t.test('canceled by a reset the device reports: its hello in the factory state after it had applied a configuration', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const before = svc.device(mac);
  before.start();
  await waitFor(() => before.applications.length, (n) => n >= 1); // its boot provisioning: a configuration applied
  await before.stop();
  const pending = (await api('POST', `/api/v1/devices/${mac}/autop/once`, { commands: 'Config.Hello.Reset = 1' })).body.job;
  const after = svc.device(mac); // the same MAC, reporting no configuration hash: the factory state
  after.start();
  const canceled = await transition(t, pending.id, 'canceled', 'finished', 'job.canceled');
  t.match(canceled, { kind: 'autop-once', error: { code: 'reset', message: 'the device was reset' }, actor: 'engine', fromState: 'queued' });
  t.notOk(after.applications.some((a) => a.id === pending.id), 'never applied');
  await after.stop();
});

t.test("canceled by the device's deletion, and counted in intercom_jobs_finished_total", async (t) => {
  const mac = await offlineDevice();
  const job = (await api('POST', `/api/v1/devices/${mac}/autop/once`, { commands: 'Config.Deleted = 1' })).body.job;
  const counted = async () => {
    const text = (await svc.api('GET', '/metrics')).body as string;
    const line = text.split('\n').find((l) => l.startsWith('intercom_jobs_finished_total{') && l.includes('kind="autop-once"') && l.includes('state="canceled"'));
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const before = await counted();
  t.equal((await api('DELETE', `/api/v1/devices/${mac}`)).status, 204);
  t.match(await transition(t, job.id, 'canceled', 'finished', 'job.canceled'), { error: { code: 'device_deleted' }, actor: 'engine' });
  // The metrics sink took the event in the same pass as the test sink, or takes it in the next one.
  t.equal(await waitFor(counted, (c) => c === before + 1), before + 1, 'the deleted device’s canceled job is counted');
});

t.test('expired', async (t) => {
  const mac = await offlineDevice();
  const job = (await api('POST', `/api/v1/devices/${mac}/reboot`, { expiresInSeconds: 10 })).body.job;
  t.match(await transition(t, job.id, 'expired', 'finished', 'job.expired'), { fromState: 'queued', error: { code: 'expired' }, actor: 'engine' });
});

t.test('canceled with its upgrade; the upgrade records when its last device finished', async (t) => {
  const fw = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.201', image: Buffer.alloc(1000, 3) })).body;
  const mac = newMac();
  await knownDevice(svc, token, mac, { model: 'R29', firmware: '29.30.10.112', offline: true });
  const upgrade = (await api('POST', '/api/v1/upgrades', { firmwareId: fw.id, macs: [mac] })).body;
  t.equal(upgrade.executedAt, null, 'not executed while its job waits');
  const jobId = upgrade.deviceStates[0].jobId;
  t.equal((await api('DELETE', `/api/v1/upgrades/${upgrade.id}?force=true`)).status, 200);
  const canceled = await transition(t, jobId, 'canceled', 'finished', 'job.canceled');
  t.match(canceled, { kind: 'upgrade', batchId: upgrade.id, fromState: 'queued' });
  const executed = await waitFor(() => api('GET', `/api/v1/upgrades/${upgrade.id}`).then((r) => r.body), (u) => u.executedAt !== null);
  t.equal(executed.status, 'executed');
  t.equal(new Date(executed.executedAt).getTime(), canceled.at.getTime(), 'at the instant its last job was canceled');
});

t.test('events reach a sink in the order of their transitions, and the outbox empties', async (t) => {
  const byJob = new Map<string, number[]>();
  for (const e of events.events) byJob.set(e.jobId, [...(byJob.get(e.jobId) ?? []), e.at.getTime()]);
  for (const [jobId, ats] of byJob) t.same(ats, [...ats].sort((a, b) => a - b), `job ${jobId.slice(0, 8)} in order`);
  const left = await waitFor(() => svc.sql<{ n: number }>('SELECT count(*)::int AS n FROM job_events'), (r) => r[0]!.n === 0);
  t.equal(left[0]!.n, 0, 'every sink took every event, so none is left');
});
