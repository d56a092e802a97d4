import t from 'tap';
import { helloProcessed, once, parked, startTestService, waitFor } from '../helpers/service.js';

const svc = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '300', JOB_MAX_ATTEMPTS: '3' });
const installer = await svc.createInstaller();
const other = await svc.createInstaller();
const token = installer.token;
const job = (id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);
const until = (id: string, states: string[]) => waitFor(() => job(id), (j) => states.includes(j.state));
const jobsOf = (mac: string) => svc.api('GET', `/api/v1/jobs?mac=${mac}&pageSize=100`, { token }).then((r) => r.body.items as any[]);
const settled = (mac: string) => waitFor(() => jobsOf(mac), (js) => js.every((j) => ['succeeded', 'failed', 'expired', 'canceled'].includes(j.state)));
/** Waits until a device's n-th boot provisioning has succeeded. */
const provisioned = (mac: string, count = 1) =>
  waitFor(() => jobsOf(mac), (js) => js.filter((j) => j.kind === 'provision' && j.state === 'succeeded').length >= count && js.every((j) => ['succeeded', 'failed', 'expired', 'canceled'].includes(j.state)));
/** Adds a device, connects its simulator and waits for its boot provisioning. */
async function readyDevice(mac: string, opts: Parameters<typeof svc.device>[1] = {}) {
  await svc.addDevice(token, mac);
  const device = svc.device(mac, opts);
  device.start();
  await once(device, 'online');
  await provisioned(mac);
  return device;
}
let n = 0x100;
const newMac = () => `0C11050${(n++).toString(16).toUpperCase().padStart(5, '0')}`;

t.test("one device's waiting jobs never hold up another device's", async (t) => {
  const offlineMac = newMac();
  const onlineMac = newMac();
  await svc.addDevice(token, offlineMac);
  await svc.addDevice(token, onlineMac);
  const waiting = await svc.api('POST', `/api/v1/devices/${offlineMac}/reboot`, { token });
  const device = svc.device(onlineMac);
  device.start();
  await once(device, 'online');
  const res = await svc.api('POST', `/api/v1/devices/${onlineMac}/autop/once`, { token, body: { commands: 'Config.Independent = 1' } });
  t.equal((await until(res.body.job.id, ['succeeded'])).state, 'succeeded');
  t.equal((await job(waiting.body.job.id)).state, 'queued', 'the older job of the offline device still waits');
  await svc.api('DELETE', `/api/v1/jobs/${waiting.body.job.id}`, { token });
  await device.stop();
});

t.test('jobs for an offline device wait and are delivered in creation order when it connects', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const autop = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: 'Config.Order.First = 1' } });
  const reboot = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token });
  t.equal(autop.status, 202);
  t.equal(reboot.status, 202);
  await parked(svc, reboot.body.job.id); // the engine has decided: both wait for the device
  t.equal((await job(autop.body.job.id)).state, 'queued', 'not marked delivered while the device is offline');
  t.equal((await job(reboot.body.job.id)).attempts, 0);

  const device = svc.device(mac, { reconnect: { minMs: 50, maxMs: 100 } });
  device.start();
  t.equal((await until(reboot.body.job.id, ['succeeded'])).state, 'succeeded');
  t.equal((await job(autop.body.job.id)).state, 'succeeded');
  const kinds = device.received.map((c) => c.kind);
  t.ok(kinds.indexOf('autop') < kinds.indexOf('reboot'), `the reboot waits for the Autop created before it (${kinds.join(', ')})`);
  t.notOk(kinds.includes('provision'), 'no extra provisioning job while the Autop carries the configuration');
  await waitFor(() => device.boots.length, (b) => b === 1);
  t.equal(device.boots.length, 1, 'the device rebooted once');
  await once(device, 'online').catch(() => {});
  await device.stop();
});

t.test('a job not finished before it expires ends expired', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const res = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, body: { expiresInSeconds: 10 } });
  t.equal(res.status, 202);
  const expired = await until(res.body.job.id, ['expired']);
  t.equal(expired.state, 'expired');
  t.match(expired.error, { code: 'expired' });
  t.equal((await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token, body: { expiresInSeconds: 5 } })).status, 400, 'at least 10 s');
});

t.test('an unfinished job can be canceled; a finished one answers 409', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const res = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token });
  const canceled = await svc.api('DELETE', `/api/v1/jobs/${res.body.job.id}`, { token });
  t.equal(canceled.status, 200);
  t.equal(canceled.body.state, 'canceled');
  const again = await svc.api('DELETE', `/api/v1/jobs/${res.body.job.id}`, { token });
  t.equal(again.status, 409);
  t.equal(again.body.error.code, 'job_finished');
  t.equal((await svc.api('DELETE', `/api/v1/jobs/${res.body.job.id}`, { token: other.token })).status, 404);
  const device = svc.device(mac);
  device.start();
  await once(device, 'online');
  await provisioned(mac);
  t.notOk(device.received.some((c) => c.id === res.body.job.id), 'a canceled job is never delivered');
  await device.stop();
});

t.test('lost acks are redelivered under the same id and applied once', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac, { behaviour: { dropAcks: 2 } });
  const res = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Counter.Bump = 1' } });
  const done = await until(res.body.job.id, ['succeeded', 'failed']);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts, 3, 'delivered three times');
  t.equal(device.received.filter((c) => c.id === res.body.job.id).length, 3);
  t.equal(device.applications.filter((a) => a.id === res.body.job.id).length, 1, 'applied once');
  await device.stop();
});

t.test('a device that goes offline mid-job gets the job again when it is back, and applies it once', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const behaviour = { offlineOnKinds: ['autop-once'] };
  const device = svc.device(mac, { reconnect: { minMs: 50, maxMs: 200 }, behaviour });
  device.start();
  await once(device, 'online');
  await provisioned(mac);
  const res = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Flaky.Link = 1' } });
  await once(device, 'offline'); // dropped the connection on receiving the command, without answering
  behaviour.offlineOnKinds = [];
  const done = await until(res.body.job.id, ['succeeded', 'failed']);
  t.equal(done.state, 'succeeded');
  t.ok(done.attempts >= 2, `redelivered after the reconnect (${done.attempts} deliveries)`);
  t.equal(device.applications.filter((a) => a.id === res.body.job.id).length, 1, 'applied once');
  t.equal(device.config.get('Config.Flaky.Link'), '1');
  await device.stop();
});

t.test('a device that never answers fails the job after the maximum attempts, with the reason', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { dropAcks: 100 } });
  device.start();
  await once(device, 'online');
  const res = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token });
  const failed = await until(res.body.job.id, ['failed']);
  t.equal(failed.state, 'failed');
  t.match(failed.error, { code: 'no_answer', message: /3 deliveries/ });
  await device.stop();
});

t.test('a device that reports failure fails the job with its error', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { failKinds: ['reboot'] } });
  device.start();
  await once(device, 'online');
  const res = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token });
  const failed = await until(res.body.job.id, ['failed']);
  t.match(failed.error, { code: 'simulated_failure' });
  await device.stop();
});

t.test('a reset cancels pending one-time Autop; the reset device gets its regular Autop back but no one-time line', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac, { reconnect: { minMs: 50, maxMs: 100 } });
  await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: 'Config.Regular.Keep = yes' } });
  await settled(mac);
  await device.stop();

  const once1 = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Once.Lost = 1' } });
  const reset = await svc.api('POST', `/api/v1/devices/${mac}/reset`, { token, body: { mode: 'factory' } });
  t.equal(reset.status, 202);
  t.same(reset.body.canceledOneTimeJobs, [once1.body.job.id]);
  t.equal((await job(once1.body.job.id)).state, 'canceled');

  const back = svc.device(mac, { reconnect: { minMs: 50, maxMs: 100 } });
  // the same hardware: what it had applied before
  for (const [k, v] of device.config) back.config.set(k, v);
  back.configHash = device.configHash;
  back.start();
  t.equal((await until(reset.body.job.id, ['succeeded'])).state, 'succeeded');
  const reprovisioned = await waitFor(
    () => jobsOf(mac),
    (js) => js.some((j) => j.kind === 'provision' && j.state === 'succeeded' && Date.parse(j.createdAt) > Date.parse(reset.body.job.createdAt)),
  );
  t.ok(
    reprovisioned.some((j) => j.kind === 'provision' && Date.parse(j.createdAt) > Date.parse(reset.body.job.createdAt)),
    'the reset device was provisioned again, after the reset',
  );
  await waitFor(() => back.config.get('Config.Regular.Keep'), (v) => v === 'yes');
  t.equal(back.config.get('Config.Regular.Keep'), 'yes', 'regular Autop is back');
  t.notOk(back.config.has('Config.Once.Lost'), 'the one-time line from before the reset never arrives');
  t.notOk(back.received.some((c) => c.id === once1.body.job.id || c.config?.includes('Config.Once.Lost')), 'the canceled one-time job was never delivered');
  await back.stop();
});

t.test('a device coming back reset by itself loses its pending one-time Autop', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  await device.stop();
  const pending = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Once.Gone = 1' } });
  const factoryFresh = svc.device(mac); // no configHash: factory state
  factoryFresh.start();
  t.equal((await until(pending.body.job.id, ['canceled'])).state, 'canceled');
  await settled(mac);
  t.notOk(factoryFresh.config.has('Config.Once.Gone'));
  await factoryFresh.stop();
});

t.test('batch Autop: at most 500 devices, only your own, progress by batch id', async (t) => {
  const macs = [newMac(), newMac(), newMac()];
  const devices = [];
  for (const mac of macs) {
    await svc.addDevice(token, mac);
    const d = svc.device(mac);
    d.start();
    await once(d, 'online');
    devices.push(d);
  }
  for (const mac of macs) await provisioned(mac);
  const tooMany = Array.from({ length: 501 }, (_, i) => `AA${i.toString(16).padStart(10, '0')}`);
  const over = await svc.api('POST', '/api/v1/autop/batch', { token, body: { macs: tooMany, commands: 'Config.A = 1', mode: 'regular' } });
  t.equal(over.status, 400);
  t.match(over.body.error.message, /500/);

  const othersMac = newMac();
  await svc.addDevice(other.token, othersMac);
  const foreign = await svc.api('POST', '/api/v1/autop/batch', { token, body: { macs: [...macs, othersMac], commands: 'Config.A = 1', mode: 'regular' } });
  t.equal(foreign.status, 400);
  t.same(foreign.body.error.details.macs, [othersMac], 'the answer names the MACs that are not yours');
  const before = (await svc.sql('select count(*)::int as n from jobs'))[0].n;

  const res = await svc.api('POST', '/api/v1/autop/batch', { token, body: { macs, commands: 'Config.Batch.Value = 7\nConfig.Batch.Value = 7', mode: 'regular' } });
  t.equal(res.status, 202);
  t.equal(res.body.jobs.length, 3);
  t.equal(res.body.dropped.length, 1);
  t.equal((await svc.sql('select count(*)::int as n from jobs'))[0].n, before + 3, 'the refused batches wrote nothing');
  const progress = await waitFor(
    () => svc.api('GET', `/api/v1/autop/batch/${res.body.batchId}`, { token }).then((r) => r.body),
    (p) => p.finished,
  );
  t.match(progress, { devices: 3, finished: true, counts: { succeeded: 3, failed: 0 } });
  for (const d of devices) t.equal(d.config.get('Config.Batch.Value'), '7');
  t.same((await svc.api('GET', `/api/v1/devices/${macs[0]}/autop`, { token })).body.commands, ['Config.Batch.Value = 7'], 'regular batch lines join the regular Autop');
  t.equal((await svc.api('GET', `/api/v1/autop/batch/${res.body.batchId}`, { token: other.token })).status, 404);
  const listed = await svc.api('GET', `/api/v1/jobs?batchId=${res.body.batchId}`, { token });
  t.equal(listed.body.total, 3);
  for (const d of devices) await d.stop();
});

t.test('connect type becomes part of the effective configuration', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  t.equal(device.config.get('Config.Account1.SIP.TransType'), '0', 'UDP by default');
  const res = await svc.api('PUT', `/api/v1/devices/${mac}/connect-type`, { token, body: { connectType: 'tcp' } });
  t.equal(res.status, 202);
  await until(res.body.job.id, ['succeeded']);
  t.equal(device.config.get('Config.Account1.SIP.TransType'), '1');
  t.equal((await svc.api('PUT', `/api/v1/devices/${mac}/connect-type`, { token, body: { connectType: 'sctp' } })).status, 400);
  await device.stop();
});

t.test('a device reporting another configuration hash on boot is provisioned', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { configHash: 'f'.repeat(64) });
  device.start();
  await once(device, 'online');
  const js = await waitFor(() => jobsOf(mac), (list) => list.some((j) => j.kind === 'provision' && j.state === 'succeeded'));
  t.ok(js.some((j) => j.kind === 'provision'));
  t.not(device.configHash, 'f'.repeat(64));
  await device.stop();
  // same hash again: nothing to do
  const again = svc.device(mac, { configHash: device.configHash });
  const processed = helloProcessed(svc, mac);
  again.start();
  await processed;
  t.equal((await jobsOf(mac)).filter((j) => j.kind === 'provision').length, 1, 'no provisioning when the hash matches');
  await again.stop();
});

t.test('the audit log says who asked for what and what came of it', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const res = await svc.api('POST', `/api/v1/devices/${mac}/reboot`, { token });
  await until(res.body.job.id, ['succeeded']);
  const audit = await svc.api('GET', `/api/v1/audit?jobId=${res.body.job.id}`, { token });
  // Its `accepted` is audited as job.progress when it is applied before its `succeeded` (answers may race).
  t.same(audit.body.items.map((e: any) => e.action).reverse().filter((a: string) => a !== 'job.progress'), ['job.created', 'job.dispatched', 'job.succeeded']);
  t.equal(audit.body.items.at(-1).actor, `account:${installer.id}`);
  t.equal((await svc.api('GET', `/api/v1/audit?jobId=${res.body.job.id}`, { token: other.token })).body.total, 0);
  await device.stop();
});

t.test('bad job requests are 400 and write nothing', async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const before = (await svc.sql('select count(*)::int as n from jobs'))[0].n;
  for (const [path, body] of [
    [`/api/v1/devices/${mac}/reset`, { mode: 'hard' }],
    [`/api/v1/devices/${mac}/autop/once`, { commands: '' }],
    [`/api/v1/devices/${mac}/autop/once`, { commands: Array.from({ length: 1001 }, (_, i) => `Config.K${i} = 1`) }],
    [`/api/v1/devices/${mac}/autop/once`, { commands: `Config.Long = ${'x'.repeat(600)}` }],
    [`/api/v1/devices/${mac}/autop/once`, { commands: 'Config.A = 1', extra: true }],
  ] as const) {
    const res = await svc.api(path.endsWith('reset') ? 'POST' : 'POST', path, { token, body });
    t.equal(res.status, 400, `${path} ${JSON.stringify(body).slice(0, 60)}`);
  }
  t.equal((await svc.api('GET', '/api/v1/jobs?state=bogus', { token })).status, 400);
  t.equal((await svc.sql('select count(*)::int as n from jobs'))[0].n, before);
});

t.test("a device's failed answer is stored even when its error holds a NUL: the job fails at once with the text cleaned", async (t) => {
  // Deliveries wait an hour for their answer here, so the one answer below is the only thing that can end the job.
  const patient = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '3600000' });
  const { svc, token } = { svc: patient, token: (await patient.createInstaller()).token };
  const job = (id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);
  const until = (id: string, states: string[]) => waitFor(() => job(id), (j) => states.includes(j.state));
  const mac = newMac();
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { behaviour: { dropAcks: 1000 } }); // never answers by itself
  const processed = helloProcessed(svc, mac);
  device.start();
  await processed;
  const boot = (await svc.api('GET', `/api/v1/jobs?mac=${mac}&kind=provision`, { token })).body.items[0];
  if (boot) await svc.api('DELETE', `/api/v1/jobs/${boot.id}`, { token }); // the boot provisioning would wait its hour first
  const res = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Relay.Test = 1' } });
  await waitFor(() => device.received.some((c) => c.id === res.body.job.id), Boolean);
  await device.publish(`commands/${res.body.job.id}/status`, JSON.stringify({ state: 'failed', error: { code: 'relay\u0000stuck', message: 'line 1\u0000line 2' } }));
  const failed = await until(res.body.job.id, ['failed']);
  t.same(failed.error, { code: 'relay\ufffdstuck', message: 'line 1\ufffdline 2' }, 'what could be stored was stored');
  t.equal(failed.attempts, 1, 'ended by that answer, not by the attempts running out');
  await device.stop();
});

t.test("a deleted device's waiting jobs end, and never reach whoever binds its MAC next", async (t) => {
  const mac = newMac();
  await svc.addDevice(token, mac);
  const pending = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Sip.Server = a.example.com' } });
  t.equal((await svc.api('DELETE', `/api/v1/devices/${mac}`, { token })).status, 204);
  t.equal((await svc.api('DELETE', `/api/v1/mac-library/${mac}`, { token })).status, 204);
  const canceled = await until(pending.body.job.id, ['canceled']);
  t.match(canceled.error, { code: 'device_deleted' });

  await svc.addDevice(other.token, mac); // another installer binds the MAC
  const device = svc.device(mac);
  device.start();
  await waitFor(() => device.configHash, Boolean); // provisioned for its new owner
  t.notOk(device.received.some((c) => c.id === pending.body.job.id), "the former owner's job was never delivered");
  t.notOk(device.config.has('Config.Sip.Server'));
  await device.stop();
});

t.test('a connected device whose wake-up was lost gets its waiting job at the next reconciliation', async (t) => {
  const lossy = await startTestService(t, { RECONCILE_INTERVAL_MS: '300', JOB_ACK_TIMEOUT_MS: '3600000' });
  const { token: tk } = await lossy.createInstaller();
  const mac = '0C1105E0A001';
  await lossy.addDevice(tk, mac);
  const device = lossy.device(mac, { behaviour: { dropAcks: 1000 } }); // answers nothing
  device.start();
  await once(device, 'hello');
  const first = (await lossy.api('POST', `/api/v1/devices/${mac}/autop/once`, { token: tk, body: { commands: 'Config.First = 1' } })).body.job;
  const second = (await lossy.api('POST', `/api/v1/devices/${mac}/reboot`, { token: tk })).body.job;
  await parked(lossy, second.id);
  // The job ahead finishes, but the wake-up that should follow is lost (as when Redis blinks at that moment).
  await lossy.sql("UPDATE jobs SET state = 'canceled', finished_at = now() WHERE id = $1 OR (mac = $2 AND kind = 'provision')", [first.id, mac]);
  await waitFor(() => device.received.some((c) => c.id === second.id), Boolean);
  t.pass('the waiting job was delivered without any other event');
});
