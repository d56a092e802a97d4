import t from 'tap';
import { helloProcessed, once, startTestService, waitFor } from '../helpers/service.js';

// A reboot storm: devices that say hello together with the configuration they hold. Their hellos go to the
// engine in batches (devicesHello/devicesReady); each must cost no job and no write beyond presence.

const svc = await startTestService(t);
const installer = await svc.createInstaller();
const token = installer.token;
const jobsOf = (mac: string) => svc.api('GET', `/api/v1/jobs?mac=${mac}&pageSize=100`, { token }).then((r) => r.body.items as any[]);
const macs = Array.from({ length: 6 }, (_, i) => `0C1106000${(0x100 + i).toString(16).toUpperCase()}`);

// Which statements set a device's configuration hash (presence never names it).
await svc.sql(`CREATE TABLE test_hash_writes (mac text, hash text)`);
await svc.sql(`CREATE FUNCTION test_hash_written() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO test_hash_writes VALUES (NEW.mac, NEW.config_hash); RETURN NEW; END $$`);
await svc.sql(`CREATE TRIGGER test_hash_writes AFTER UPDATE OF config_hash ON devices FOR EACH ROW EXECUTE FUNCTION test_hash_written()`);

t.test('devices rebooting together with the configuration they hold: no job, no hash written, all ready', async (t) => {
  const hashes = new Map<string, string>();
  for (const [i, mac] of macs.entries()) {
    await svc.addDevice(token, mac);
    // One device's configuration has regular Autop lines: the batch renders them from its own read.
    if (i === 1) t.equal((await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: 'Config.Bench.Regular = 1' } })).status, 202);
    const device = svc.device(mac);
    device.start();
    await once(device, 'online');
    await waitFor(() => jobsOf(mac), (js) => js.some((j) => j.state === 'succeeded') && js.every((j) => ['succeeded', 'failed', 'expired', 'canceled'].includes(j.state)));
    hashes.set(mac, device.configHash!);
    await device.stop();
  }
  t.equal((await svc.sql(`SELECT count(*)::int AS n FROM test_hash_writes WHERE hash = 'factory'`))[0].n, macs.length, 'the first boot wrote each factory hash once');
  await svc.sql(`DELETE FROM test_hash_writes`);
  const jobsBefore = (await svc.sql(`SELECT count(*)::int AS n FROM jobs`))[0].n;
  const auditBefore = (await svc.sql(`SELECT count(*)::int AS n FROM audit_log`))[0].n;

  const devices = macs.map((mac) => svc.device(mac, { configHash: hashes.get(mac) }));
  const processed = Promise.all(macs.map((mac) => helloProcessed(svc, mac)));
  for (const d of devices) d.start();
  await processed;
  t.same(await svc.sql(`SELECT mac FROM test_hash_writes`), [], 'no configuration hash written');
  // Ready means commands flow: one sent now reaches the device at once.
  const reboot = await svc.api('POST', `/api/v1/devices/${macs[0]}/reboot`, { token });
  await waitFor(() => svc.api('GET', `/api/v1/jobs/${reboot.body.job.id}`, { token }).then((r) => r.body.state), (s) => s === 'succeeded');

  t.equal((await svc.sql(`SELECT count(*)::int AS n FROM jobs`))[0].n, jobsBefore + 1, 'no job but the reboot asked for');
  t.equal((await svc.sql(`SELECT count(*)::int AS n FROM audit_log WHERE job_id IS DISTINCT FROM $1`, [reboot.body.job.id]))[0].n, auditBefore, "no audit row but the reboot's");
  for (const d of devices) await d.stop();
});
