import t from 'tap';
import { once, startTestService, waitFor } from '../helpers/service.js';

// A state change and its audit row are one statement: whatever fails or is killed between them, a job
// never shows a state its audit log does not.

const svc = await startTestService(t, { JOB_IN_PROGRESS_TIMEOUT_MS: '500', JOB_ACK_TIMEOUT_MS: '500' });
const { token } = await svc.createInstaller();

t.test('a transition whose audit row cannot be written does not happen', async (t) => {
  const mac = '0C1105A0D001';
  await svc.addDevice(token, mac);
  const device = svc.device(mac);
  device.start();
  await once(device, 'hello');
  await waitFor(() => device.applications.length, (n) => n >= 1); // boot provisioning
  await svc.sql(`CREATE FUNCTION refuse_succeeded_audit() RETURNS trigger AS $$
    BEGIN IF NEW.action = 'job.succeeded' THEN RAISE EXCEPTION 'audit refused (test)'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`);
  await svc.sql('CREATE TRIGGER refuse_succeeded BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_succeeded_audit()');

  const job = (await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Audit.Marker = 1' } })).body.job;
  // The device answers succeeded; writing that answer fails with its audit row.
  await new Promise<void>((resolve) => {
    const stop = svc.service.engine.observe({
      answerProcessed(m, id) {
        if (m !== mac || id !== job.id || !device.applications.some((a) => a.id === job.id)) return;
        stop();
        resolve();
      },
    });
  });
  const stuck = (await svc.api('GET', `/api/v1/jobs/${job.id}`, { token })).body;
  t.not(stuck.state, 'succeeded', 'not succeeded without its audit row');
  const audit = async () => (await svc.api('GET', `/api/v1/audit?jobId=${job.id}&pageSize=50`, { token })).body.items.map((e: any) => e.action);
  t.notOk((await audit()).includes('job.succeeded'));

  await svc.sql('DROP TRIGGER refuse_succeeded ON audit_log');
  const done = await waitFor(() => svc.api('GET', `/api/v1/jobs/${job.id}`, { token }).then((r) => r.body), (j) => j.state === 'succeeded');
  t.equal(done.state, 'succeeded', 'the redelivered answer finishes it');
  t.equal((await audit()).filter((a: string) => a === 'job.succeeded').length, 1, 'with exactly one audit row');
  t.equal(device.applications.filter((a) => a.id === job.id).length, 1, 'applied once');
  const orphans = await svc.sql(`SELECT j.id FROM jobs j WHERE j.state IN ('succeeded','failed','expired','canceled')
    AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.job_id = j.id AND a.action = 'job.' || j.state)`);
  t.same(orphans, [], 'no finished job anywhere lacks the audit row of its state');
  await device.stop();
});
