import t from 'tap';
import { startTestService, waitFor } from '../helpers/service.js';

// What the simulated device does with a command id it sees again (docs/device-protocol.md, "At most once"
// and "Redelivery"), against the real service. The fault soak lost jobs delivered just before a gateway
// kill: their answers went down with the link, the device was still applying them when the cloud sent them
// again, answered nothing to those deliveries, and the jobs failed `no_answer` while the device finished.

const finished = ['succeeded', 'failed', 'expired', 'canceled'];
const svc = await startTestService(t, { JOB_ACK_TIMEOUT_MS: '500', JOB_MAX_ATTEMPTS: '3' });
const { token } = await svc.createInstaller();
const jobOf = (id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);

const provisioned = (mac: string) => svc.provisionedDevice(token, mac);

t.test('a command delivered again while the device applies it: the device says it is at it, and the job succeeds', async (t) => {
  const device = await provisioned('0C1105DD0001');
  // The first delivery's answers are lost (as with a gateway killed under them) and applying takes longer
  // than all three deliveries' deadlines (0.5 s, then 1 s, then 2 s).
  device.opts.behaviour = { dropAcks: 1, applyDelayMs: 5000 };
  const res = await svc.api('POST', `/api/v1/devices/${device.opts.mac}/autop/once`, { token, body: { commands: 'Config.Slow.Marker = 1' } });
  t.equal(res.status, 202);
  const id = res.body.job.id as string;
  const job = await waitFor(() => jobOf(id), (j) => finished.includes(j.state), 60_000, 50);
  t.equal(job.state, 'succeeded', `the job ${job.state} (${JSON.stringify(job.error)})`);
  t.ok(device.received.filter((c) => c.id === id).length >= 2, 'the command was delivered again while being applied');
  t.equal(device.applications.filter((a) => a.id === id).length, 1, 'applied once');
  const states = device.answers.filter((a) => a.id === id).map((a) => a.status.state);
  t.equal(states.filter((s) => s === 'succeeded').length, 1, `one final answer (${states.join(', ')})`);
  t.equal(device.config.get('Config.Slow.Marker'), '1');
});

t.test('a command id already applied is answered succeeded again and not applied again', async (t) => {
  const device = await provisioned('0C1105DD0002');
  const res = await svc.api('POST', `/api/v1/devices/${device.opts.mac}/autop/once`, { token, body: { commands: 'Config.Once.Marker = 1' } });
  const id = res.body.job.id as string;
  t.equal((await waitFor(() => jobOf(id), (j) => finished.includes(j.state))).state, 'succeeded');
  const command = device.received.find((c) => c.id === id)!;
  await svc.service.gateway.publish(device.opts.mac, command);
  const answers = await waitFor(() => device.answers.filter((a) => a.id === id), (a) => a.length >= 3);
  t.same(answers.map((a) => a.status.state), ['accepted', 'succeeded', 'succeeded'], 'the repeated id is answered succeeded');
  t.equal(answers[2]!.status.configHash, device.configHash, 'with the configuration hash it runs');
  t.equal(device.applications.filter((a) => a.id === id).length, 1, 'not applied again');
});
