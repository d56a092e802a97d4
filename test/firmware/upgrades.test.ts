import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import type { DeviceBehaviour, SimulatedDevice } from '../../simulators/device-simulator.js';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { FACTORY_SECRET, parked, startTestService, waitFor } from '../helpers/service.js';

const svc = await startTestService(t, { JOB_IN_PROGRESS_TIMEOUT_MS: '4000', JOB_ACK_TIMEOUT_MS: '1000' });
const installer = await svc.createInstaller();
const other = await svc.createInstaller();
const token = installer.token;
const OLD = '29.30.10.112';
const NEW = '29.30.10.200';
const fw = (await uploadFirmware(svc, { model: 'R29', version: NEW, image: Buffer.alloc(300_000, 7) })).body;

let n = 0x300;
const newMac = () => `0C11050${(n++).toString(16).toUpperCase().padStart(5, '0')}`;
const upgrade = (id: string) => svc.api('GET', `/api/v1/upgrades/${id}`, { token }).then((r) => r.body);
const executed = (id: string) => waitFor(() => upgrade(id), (u) => u.status === 'executed', undefined, 100);
const count = async (table: string) => Number((await svc.sql(`SELECT count(*) AS n FROM ${table}`))[0].n);

/** A connected R29 (or other model) whose model and firmware the service has recorded from its hello. */
async function device(opts: { model?: string; firmware?: string; behaviour?: DeviceBehaviour; owner?: string } = {}): Promise<SimulatedDevice> {
  return knownDevice(svc, opts.owner ?? token, newMac(), { model: opts.model ?? 'R29', firmware: opts.firmware ?? OLD, reconnect: { minMs: 50, maxMs: 100 }, behaviour: opts.behaviour ?? {} });
}
const mac = (d: SimulatedDevice) => d.opts.mac;

t.test('an upgrade started now takes devices to the new version; a cut download resumes with Range', async (t) => {
  const plain = await device();
  const cut = await device({ behaviour: { dropDownloadAt: 0.5, progressStepPercent: 10 } });
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(plain), mac(cut)] } });
  t.equal(res.status, 201, JSON.stringify(res.body));
  t.match(res.body, { version: NEW, model: 'R29', devices: 2, status: 'processing', resetAfterUpgrade: false });
  const done = await executed(res.body.id);
  t.equal(done.status, 'executed');
  t.equal(done.succeeded, 2, JSON.stringify(done.deviceStates));
  t.equal(done.failed, 0);
  t.same(done.deviceStates.map((d: any) => [d.state, d.percent]), [['succeeded', 100], ['succeeded', 100]]);
  t.equal(plain.firmware, NEW, 'the device rebooted into the new version');
  t.equal(cut.firmware, NEW);
  const command = plain.received.find((c) => c.kind === 'upgrade')!;
  t.match(command.params, { firmwareId: fw.id, version: NEW, size: 300_000, sha256: fw.sha256, resetAfterUpgrade: false, url: `${svc.httpUrl}/firmware/${fw.id}/image` });
  const ranges = cut.downloads.map((d) => [d.status, d.range]);
  t.equal(ranges[0]![0], 200, 'the first request fetches the whole image');
  t.equal(ranges[1]![0], 206, `the second resumes with a range (${JSON.stringify(ranges)})`);
  t.match(ranges[1]![1], /^bytes=\d+-$/);
  t.equal(cut.downloads.reduce((a, d) => a + d.bytes, 0), 300_000, 'no byte was downloaded twice');
  const view = await waitFor(() => svc.api('GET', `/api/v1/devices/${mac(plain)}`, { token }).then((r) => r.body), (v) => v.firmware === NEW);
  t.equal(view.firmware, NEW, 'the device list shows the new version');

  const again = await fetch(`${svc.httpUrl}/firmware/${fw.id}/image`, { headers: { authorization: `Basic ${Buffer.from(`${mac(plain)}:${deriveDeviceKey(FACTORY_SECRET, mac(plain))}`).toString('base64')}` } });
  t.equal(again.status, 403, 'once its upgrade is over the device may not download the image');
  const listed = await svc.api('GET', '/api/v1/upgrades?status=executed&model=r29', { token });
  t.ok(listed.body.items.some((u: any) => u.id === res.body.id && u.succeeded === 2), 'listed as executed');
  t.notOk((await svc.api('GET', '/api/v1/upgrades?status=pending', { token })).body.items.some((u: any) => u.id === res.body.id));
});

t.test('while a device downloads, the upgrade shows it downloading with its percent', async (t) => {
  const slow = await device({ behaviour: { progressStepPercent: 20, downloadPauseMs: 400 } });
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(slow)] } });
  const midway = await waitFor(() => upgrade(res.body.id), (u) => u.deviceStates[0].state === 'downloading' && u.deviceStates[0].percent > 0, undefined, 50);
  t.equal(midway.deviceStates[0].state, 'downloading');
  t.ok(midway.deviceStates[0].percent > 0 && midway.deviceStates[0].percent < 100, `percent ${midway.deviceStates[0].percent}`);
  t.equal(midway.status, 'processing');
  t.equal(midway.counts.downloading, 1);
  const done = await executed(res.body.id);
  t.equal(done.succeeded, 1);
});

t.test('a tampered image is never installed: the device reports the checksum failure', async (t) => {
  const tampered = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.201' })).body;
  const path = join(svc.dataDir, 'firmware', `${tampered.id}.bin`);
  const bytes = readFileSync(path);
  bytes[1000] = bytes[1000]! ^ 0xff;
  writeFileSync(path, bytes);
  const d = await device();
  const boots = d.boots.length;
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: tampered.id, macs: [mac(d)] } });
  const done = await executed(res.body.id);
  t.equal(done.failed, 1);
  t.equal(done.deviceStates[0].state, 'failed');
  t.equal(done.deviceStates[0].reason.code, 'checksum_mismatch', done.deviceStates[0].reason.message);
  t.equal(d.firmware, OLD, 'still on the old version');
  t.equal(d.boots.length, boots, 'not rebooted');
});

t.test('a device that comes back on the old version has failed', async (t) => {
  const d = await device({ behaviour: { stayOnOldVersion: true } });
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)] } });
  const done = await executed(res.body.id);
  t.equal(done.deviceStates[0].state, 'failed');
  t.equal(done.deviceStates[0].reason.code, 'old_version');
  t.match(done.deviceStates[0].reason.message, OLD);
  t.ok(d.boots.length >= 1, 'it did reboot');
});

t.test('no hello after the reboot within the timeout fails the device', async (t) => {
  const d = await device({ behaviour: { rebootDelayMs: 60_000 } });
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)] } });
  await waitFor(() => upgrade(res.body.id), (u) => u.deviceStates[0].state === 'rebooting', undefined, 50);
  const done = await executed(res.body.id);
  t.equal(done.deviceStates[0].state, 'failed');
  t.equal(done.deviceStates[0].reason.code, 'no_hello');
  await d.stop(false);
});

t.test('reset after upgrade: the device comes back in factory state and is provisioned again', async (t) => {
  const d = await device();
  const autop = await svc.api('PUT', `/api/v1/devices/${mac(d)}/autop`, { token, body: { commands: 'Config.Upgrade.Marker = kept' } });
  await waitFor(() => svc.api('GET', `/api/v1/jobs/${autop.body.job.id}`, { token }).then((r) => r.body.state), (s) => s === 'succeeded');
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)], resetAfterUpgrade: true } });
  const done = await executed(res.body.id);
  t.equal(done.succeeded, 1);
  t.equal(d.received.find((c) => c.kind === 'upgrade')!.params.resetAfterUpgrade, true);
  const kinds = d.received.map((c) => c.kind);
  await waitFor(() => d.received.map((c) => c.kind), (k) => k.lastIndexOf('provision') > k.indexOf('upgrade'));
  t.ok(d.received.map((c) => c.kind).lastIndexOf('provision') > kinds.indexOf('upgrade'), 'the reset device is provisioned again');
  await waitFor(() => d.config.get('Config.Upgrade.Marker'), (v) => v === 'kept');
  t.equal(d.config.get('Config.Upgrade.Marker'), 'kept', 'its regular Autop is back');
});

t.test('a scheduled upgrade waits for its time, can be edited while pending, and starts once', async (t) => {
  const d = await device();
  const at = new Date(Date.now() + 60_000).toISOString();
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)], at, resetAfterUpgrade: true } });
  t.equal(res.status, 201);
  t.equal(res.body.status, 'pending');
  t.equal(res.body.upgradeTime, at);
  t.same(res.body.deviceStates.map((s: any) => s.state), ['pending']);
  t.ok((await svc.api('GET', '/api/v1/upgrades?status=pending', { token })).body.items.some((u: any) => u.id === res.body.id));
  t.equal(Number((await svc.sql('SELECT count(*) AS n FROM jobs WHERE batch_id = $1', [res.body.id]))[0].n), 0, 'no job before its time');
  t.notOk(d.received.some((c) => c.kind === 'upgrade'), 'nothing sent before its time');
  t.equal((await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: { at: new Date(Date.now() - 1000).toISOString() } })).body.error.code, 'time_in_past');

  const soon = new Date(Date.now() + 2000).toISOString();
  const patched = await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: { at: soon, resetAfterUpgrade: false } });
  t.equal(patched.status, 200, JSON.stringify(patched.body));
  t.match(patched.body, { upgradeTime: soon, resetAfterUpgrade: false, status: 'pending' });

  const done = await executed(res.body.id);
  t.equal(done.succeeded, 1);
  t.ok(new Date(done.startedAt).getTime() >= new Date(soon).getTime() - 1000, 'started at the new time');
  t.equal(d.received.filter((c) => c.kind === 'upgrade').length, 1, 'started once');
  t.equal(Number((await svc.sql('SELECT count(*) AS n FROM jobs WHERE batch_id = $1', [res.body.id]))[0].n), 1, 'one job per device');
  const late = await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: { resetAfterUpgrade: true } });
  t.equal(late.status, 409, 'no edits once started');
  t.equal(late.body.error.code, 'upgrade_started');
});

t.test("a pending upgrade's devices can be changed, and are checked as on creation", async (t) => {
  const a = await device();
  const b = await device();
  const theirs = await device({ owner: other.token });
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(a)], at: new Date(Date.now() + 3_600_000).toISOString() } });
  const refused = await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: { macs: [mac(b), mac(theirs)] } });
  t.equal(refused.status, 400);
  t.same(refused.body.error.details.notYours, [mac(theirs)]);
  t.same((await upgrade(res.body.id)).macs, [mac(a)], 'a refused change changes nothing');
  const changed = await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: { macs: [mac(a), mac(b)] } });
  t.equal(changed.status, 200);
  t.same(changed.body.macs, [mac(a), mac(b)]);
  t.equal(changed.body.devices, 2);
  t.equal((await svc.api('PATCH', `/api/v1/upgrades/${res.body.id}`, { token, body: {} })).status, 400, 'an empty change');
  t.equal((await svc.api('DELETE', `/api/v1/upgrades/${res.body.id}`, { token })).status, 204);
});

t.test('an offline device starts its upgrade when it comes back', async (t) => {
  const d = await device();
  await d.stop(false);
  await waitFor(() => svc.service.gateway.connectedSince(mac(d)), (since) => since === null); // the gateway saw it go
  const res = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)] } });
  const [job] = await svc.sql('SELECT id FROM jobs WHERE batch_id = $1', [res.body.id]);
  await parked(svc, job.id); // the engine has looked at the job and decided it waits for the device
  const waiting = await upgrade(res.body.id);
  t.equal(waiting.status, 'processing');
  t.equal(waiting.deviceStates[0].state, 'pending');
  const back = svc.device(mac(d), { reconnect: { minMs: 50, maxMs: 100 } });
  back.start();
  const done = await executed(res.body.id);
  t.equal(done.succeeded, 1);
  t.equal(back.firmware, NEW);
});

t.test('bad upgrade requests are refused and create nothing', async (t) => {
  const mine = await device();
  const e18 = await device({ model: 'E18', firmware: '18.30.10.205' });
  const theirs = await device({ owner: other.token });
  const current = await device({ firmware: NEW });
  const upgradesBefore = await count('upgrades');
  const jobsBefore = await count('jobs');
  const post = (body: unknown) => svc.api('POST', '/api/v1/upgrades', { token, body });
  const unknown = await post({ firmwareId: '00000000-0000-4000-8000-000000000000', macs: [mac(mine)] });
  t.equal(unknown.status, 400);
  t.equal(unknown.body.error.code, 'unknown_firmware');
  const mixed = await post({ firmwareId: fw.id, macs: [mac(mine), mac(e18)] });
  t.equal(mixed.status, 400);
  t.equal(mixed.body.error.code, 'invalid_devices');
  t.same(mixed.body.error.details.otherModel, [{ mac: mac(e18), model: 'E18' }], 'names the device of another model');
  const foreign = await post({ firmwareId: fw.id, macs: [mac(mine), mac(theirs)] });
  t.equal(foreign.status, 400);
  t.same(foreign.body.error.details.notYours, [mac(theirs)], "names another installer's device");
  const past = await post({ firmwareId: fw.id, macs: [mac(mine)], at: new Date(Date.now() - 60_000).toISOString() });
  t.equal(past.status, 400);
  t.equal(past.body.error.code, 'time_in_past');
  t.equal((await post({ firmwareId: fw.id, macs: [mac(mine)], at: 'tomorrow' })).status, 400, 'not an ISO-8601 instant');
  t.equal((await post({ firmwareId: fw.id, macs: [] })).status, 400, 'no devices');
  t.equal((await post({ firmwareId: fw.id, macs: ['nonsense'] })).status, 400, 'not a MAC');
  const onlyCurrent = await post({ firmwareId: fw.id, macs: [mac(current)] });
  t.equal(onlyCurrent.status, 400);
  t.equal(onlyCurrent.body.error.code, 'already_on_version');
  t.equal(await count('upgrades'), upgradesBefore, 'no upgrade was recorded');
  t.equal(await count('jobs'), jobsBefore, 'no job was recorded');

  const partly = await post({ firmwareId: fw.id, macs: [mac(mine), mac(current)], at: new Date(Date.now() + 3_600_000).toISOString() });
  t.equal(partly.status, 201);
  t.same(partly.body.skipped, [{ mac: mac(current), reason: 'already_on_version' }], 'a device already on the version is reported, not upgraded');
  t.same(partly.body.macs, [mac(mine)]);
  t.equal((await svc.api('GET', `/api/v1/upgrades/${partly.body.id}`, { token: other.token })).status, 404, "another installer does not see it");
  t.equal((await svc.api('DELETE', `/api/v1/upgrades/${partly.body.id}`, { token })).status, 204);
});

t.test('deleting: a pending upgrade is canceled, one in progress only by force, a finished record is removed', async (t) => {
  const d = await device();
  const later = new Date(Date.now() + 3_600_000).toISOString();
  const pending = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(d)], at: later } });
  t.equal((await svc.api('DELETE', `/api/v1/upgrades/${pending.body.id}`, { token })).status, 204);
  t.equal((await svc.api('GET', `/api/v1/upgrades/${pending.body.id}`, { token })).status, 404);
  const scheduled = await svc.service.redis.client.keys(`${svc.service.queuePrefix}:upgrades:upgrade-${pending.body.id}-*`);
  t.same(scheduled, [], 'its start is no longer scheduled');
  t.same(await svc.service.upgrades.start(pending.body.id), [], 'and firing it anyway starts nothing');
  t.notOk(d.received.some((c) => c.kind === 'upgrade'), 'the deleted upgrade never started');
  t.equal(Number((await svc.sql('SELECT count(*) AS n FROM jobs WHERE batch_id = $1', [pending.body.id]))[0].n), 0);

  const offline = await device();
  await offline.stop(false);
  const running = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac(offline)] } });
  t.equal(running.body.status, 'processing');
  const refused = await svc.api('DELETE', `/api/v1/upgrades/${running.body.id}`, { token });
  t.equal(refused.status, 409);
  t.equal(refused.body.error.code, 'upgrade_in_progress');
  const forced = await svc.api('DELETE', `/api/v1/upgrades/${running.body.id}?force=true`, { token });
  t.equal(forced.status, 200);
  t.equal(forced.body.deviceStates[0].state, 'canceled', 'the device that had not started is canceled');
  t.equal(forced.body.status, 'executed');
  t.equal((await svc.api('DELETE', `/api/v1/upgrades/${running.body.id}`, { token })).status, 204, 'the finished record is removed');
  t.equal((await svc.api('GET', `/api/v1/upgrades/${running.body.id}`, { token })).status, 404);
});

t.test('firmware an unfinished upgrade uses cannot be deleted', async (t) => {
  const own = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.202' })).body;
  const d = await device();
  const pending = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: own.id, macs: [mac(d)], at: new Date(Date.now() + 3_600_000).toISOString() } });
  const refused = await svc.api('DELETE', `/api/v1/firmware/${own.id}`);
  t.equal(refused.status, 409);
  t.equal(refused.body.error.code, 'firmware_in_use');
  t.same(refused.body.error.details.upgradeIds, [pending.body.id]);
  await svc.api('DELETE', `/api/v1/upgrades/${pending.body.id}`, { token });
  t.equal((await svc.api('DELETE', `/api/v1/firmware/${own.id}`)).status, 204, 'deletable once no upgrade needs it');
});
