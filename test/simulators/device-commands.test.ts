import { randomUUID } from 'node:crypto';
import t from 'tap';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { startTestService, waitFor } from '../helpers/service.js';

// What a device answers for a command it cannot carry out (docs/device-protocol.md, "Commands a device
// cannot carry out"), and what the cloud makes of the answer.

const svc = await startTestService(t);
const { token } = await svc.createInstaller();
let n = 0x300;
const newMac = () => `0C1107${(n++).toString(16).toUpperCase().padStart(6, '0')}`;

const provisioned = (mac: string) => svc.provisionedDevice(token, mac);

t.test('an unknown kind or reset mode is answered failed with its code, and nothing changes', async (t) => {
  const mac = newMac();
  const device = await provisioned(mac);
  const before = new Map(device.config);
  const boots = device.boots.length;
  const cases = [
    { kind: 'frobnicate', params: {}, code: 'unknown_kind' },
    { kind: 'reset', params: { mode: 'everything' }, code: 'invalid_params' },
    { kind: 'reset', params: {}, code: 'invalid_params' },
    { kind: 'connect-type', params: { connectType: 'sctp' }, code: 'invalid_params' },
  ];
  for (const c of cases) {
    const id = randomUUID();
    await svc.service.gateway.publish(mac, { id, kind: c.kind, params: c.params, expiresAt: new Date(Date.now() + 60_000).toISOString() });
    const answered = await waitFor(() => device.answers.filter((a) => a.id === id), (a) => a.length > 0);
    t.same(
      answered.map((a) => [a.status.state, (a.status.error as { code?: string } | undefined)?.code]),
      [['failed', c.code]],
      `${c.kind} ${JSON.stringify(c.params)}: one answer, failed with ${c.code}`,
    );
  }
  t.same(device.config, before, 'the configuration is untouched');
  t.equal(device.boots.length, boots, 'no reset, no reboot');
  t.ok(device.configHash, 'still provisioned');
  await device.stop();
});

t.test("an upgrade for another model is refused before any download; the cloud records the device's code", async (t) => {
  const mac = newMac();
  await knownDevice(svc, token, mac, { model: 'R29', firmware: '29.30.10.112', offline: true });
  const fw = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.220' })).body;
  const upgrade = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [mac] } });
  t.equal(upgrade.status, 201, JSON.stringify(upgrade.body));
  // The unit was swapped for another model under the same MAC before the upgrade reached it.
  const swapped = svc.device(mac, { model: 'X916', firmware: '916.30.10.212' });
  swapped.start();
  const job = await waitFor(
    () => svc.api('GET', `/api/v1/jobs?mac=${mac}&kind=upgrade`, { token }).then((r) => r.body.items[0]),
    (j) => j?.state === 'failed',
  );
  t.equal(job.error.code, 'wrong_model', 'the job fails with the code the device answered');
  t.same(swapped.answers.filter((a) => a.id === job.id).map((a) => a.status.state), ['failed'], 'answered failed at once, without accepting');
  t.same(swapped.downloads, [], 'nothing was downloaded');
  t.equal(swapped.firmware, '916.30.10.212');
  await swapped.stop();
});
