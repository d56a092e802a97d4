import { createHash } from 'node:crypto';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { FACTORY_SECRET, once, startTestService, waitFor } from '../helpers/service.js';

const svc = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '400' });
const installer = await svc.createInstaller();
const other = await svc.createInstaller();
const job = (id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token: installer.token }).then((r) => r.body);
const until = (id: string, states: string[], timeoutMs = 8000) => waitFor(() => job(id), (j) => states.includes(j.state), timeoutMs);
const jobsOf = (mac: string, kind?: string) =>
  svc.api('GET', `/api/v1/jobs?mac=${mac}&pageSize=100${kind ? `&kind=${kind}` : ''}`, { token: installer.token }).then((r) => r.body.items as any[]);

async function onlineDevice(mac: string, opts = {}) {
  await svc.addDevice(installer.token, mac);
  const device = svc.device(mac, { reconnect: { minMs: 50, maxMs: 200 }, ...opts });
  device.start();
  await once(device, 'online');
  // a new device is provisioned on its first connect
  const first = await waitFor(() => jobsOf(mac, 'provision'), (js) => js.length === 1 && js[0].state === 'succeeded');
  if (first[0]?.state !== 'succeeded') throw new Error(`boot provisioning of ${mac} did not finish: ${JSON.stringify(first)}`);
  return device;
}

t.test('a new device is provisioned on first connect with its SIP account', async (t) => {
  const device = await onlineDevice('0C1105000001');
  const record = (await svc.api('GET', '/api/v1/devices/0C1105000001', { token: installer.token })).body;
  t.equal(device.config.get('Config.Account1.GENERAL.UserName'), record.sipNumber);
  t.ok(device.config.get('Config.Account1.GENERAL.Pwd'), 'the SIP password reaches the device');
  t.match(device.configHash, /^[0-9a-f]{64}$/);
});

t.test('regular Autop: validated, duplicates dropped, delivered now, served identically over HTTP', async (t) => {
  const mac = '0C1105000002';
  const device = await onlineDevice(mac);
  const bad = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token: installer.token, body: { commands: 'Config.A = 1\nnot a command\n9Bad.Key = 2\nConfig.B = ok' } });
  t.equal(bad.status, 400);
  t.equal(bad.body.error.code, 'invalid_autop');
  t.same(bad.body.error.details.lines.map((l: any) => l.line), [2, 3], 'the answer lists the bad line numbers');

  const res = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, {
    token: installer.token,
    body: { commands: ['Config.DoorSetting.RTSP.Enable = 1', 'Config.DoorSetting.RTSP.Enable = 1', 'Config.Foo.Bar = 1', 'Config.Foo.Bar = 2'] },
  });
  t.equal(res.status, 202);
  t.same(res.body.autop.commands, ['Config.DoorSetting.RTSP.Enable = 1', 'Config.Foo.Bar = 2']);
  t.same(
    res.body.dropped.map((d: any) => [d.line, d.reason]),
    [
      [2, 'duplicate of an earlier line'],
      [3, 'same key as line 4, which is kept'],
    ],
  );
  t.equal(res.body.job.kind, 'autop');
  t.equal((await until(res.body.job.id, ['succeeded'])).state, 'succeeded');
  t.equal(device.config.get('Config.DoorSetting.RTSP.Enable'), '1');
  t.equal(device.config.get('Config.Foo.Bar'), '2');
  t.same((await svc.api('GET', `/api/v1/devices/${mac}/autop`, { token: installer.token })).body.commands, ['Config.DoorSetting.RTSP.Enable = 1', 'Config.Foo.Bar = 2']);

  const pushed = device.received.at(-1)!;
  const auth = `Basic ${Buffer.from(`${mac}:${deriveDeviceKey(FACTORY_SECRET, mac)}`).toString('base64')}`;
  const pulled = await fetch(`${svc.httpUrl}/autop/${mac}.cfg`, { headers: { authorization: auth } });
  t.equal(pulled.status, 200);
  const text = await pulled.text();
  t.equal(text, pushed.config, 'pull and push give the same bytes');
  t.equal(pulled.headers.get('x-config-hash'), pushed.configHash);
  t.equal(createHash('sha256').update(text).digest('hex'), pushed.configHash);
  for (const header of [undefined, `Basic ${Buffer.from(`${mac}:${'0'.repeat(64)}`).toString('base64')}`, `Basic ${Buffer.from(`0C1105000001:${deriveDeviceKey(FACTORY_SECRET, '0C1105000001')}`).toString('base64')}`, `Bearer ${svc.httpUrl}`]) {
    const r = await fetch(`${svc.httpUrl}/autop/${mac}.cfg`, { headers: header ? { authorization: header } : {} });
    t.equal(r.status, 401, `refused: ${header?.slice(0, 20)}`);
  }
});

t.test('one-time Autop is applied once and never delivered again', async (t) => {
  const mac = '0C1105000003';
  const device = await onlineDevice(mac);
  const res = await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token: installer.token, body: { commands: 'Config.Once.Value = 42' } });
  t.equal(res.status, 202);
  t.equal((await until(res.body.job.id, ['succeeded'])).state, 'succeeded');
  t.equal(device.config.get('Config.Once.Value'), '42');
  const auth = `Basic ${Buffer.from(`${mac}:${deriveDeviceKey(FACTORY_SECRET, mac)}`).toString('base64')}`;
  const cfg = await (await fetch(`${svc.httpUrl}/autop/${mac}.cfg`, { headers: { authorization: auth } })).text();
  t.notMatch(cfg, /Config\.Once\.Value/, 'consumed: no longer part of the effective configuration');

  // reconnect: the device re-provisions (its hash included the one-time line) but never gets the line again
  device.received.length = 0;
  await device.reboot();
  await once(device, 'online');
  await waitFor(() => jobsOf(mac), (js) => js.every((j) => ['succeeded', 'failed', 'expired', 'canceled'].includes(j.state)));
  t.notOk(device.received.some((c) => c.config?.includes('Config.Once.Value')), 'the one-time line is never delivered again');
  t.equal(device.applications.filter((a) => a.id === res.body.job.id).length, 1);
});

t.test('another installer cannot touch the device', async (t) => {
  t.equal((await svc.api('PUT', '/api/v1/devices/0C1105000001/autop', { token: other.token, body: { commands: 'Config.A = 1' } })).status, 404);
  t.equal((await svc.api('POST', '/api/v1/devices/0C1105000001/reboot', { token: other.token })).status, 404);
  t.equal((await svc.api('GET', '/api/v1/jobs', { token: other.token })).body.total, 0);
});
