import t from 'tap';
import { uploadFirmware } from '../helpers/firmware.js';
import { once, startTestService, waitFor } from '../helpers/service.js';

// Smoke test of the embedded database: DATABASE_URL unset runs the same migrations on PGlite under DATA_DIR.
t.test('the service runs on embedded PGlite', async (t) => {
  const svc = await startTestService(t, { DATABASE_URL: undefined });
  t.equal(svc.service.database.kind, 'pglite');
  const installer = await svc.createInstaller();
  const created = await svc.addDevice(installer.token, '0C11050B9814');
  t.match(created.sipNumber, /^\d{10}$/);
  const imported = await svc.api('POST', '/api/v1/mac-library/import', { token: installer.token, raw: 'MAC\n0C11050B9815\n0C11050B9815\nbad' });
  t.same(imported.body, { added: 1, skipped: 1, invalid: [imported.body.invalid[0]] });
  const device = svc.device('0C11050B9814');
  device.start();
  await once(device, 'online');
  const d = await waitFor(
    () => svc.api('GET', '/api/v1/devices/0C11050B9814', { token: installer.token }),
    (r) => r.body.status === 'online',
  );
  t.equal(d.body.status, 'online');

  // Firmware and an upgrade run on PGlite too (row locks, the scheduler's conditional start).
  const fw = await uploadFirmware(svc, { model: 'R29', version: '29.30.10.200' });
  t.equal(fw.status, 201);
  await waitFor(() => svc.api('GET', '/api/v1/devices/0C11050B9814', { token: installer.token }).then((r) => r.body.firmware), (f) => f === '29.30.10.112');
  const up = await svc.api('POST', '/api/v1/upgrades', { token: installer.token, body: { firmwareId: fw.body.id, macs: ['0C11050B9814'], at: new Date(Date.now() + 1000).toISOString() } });
  t.equal(up.status, 201, JSON.stringify(up.body));
  const done = await waitFor(() => svc.api('GET', `/api/v1/upgrades/${up.body.id}`, { token: installer.token }).then((r) => r.body), (u) => u.status === 'executed', undefined, 100);
  t.equal(done.succeeded, 1, 'the scheduled upgrade ran to success on PGlite');
  await device.stop();

  // Migration 0007 and the reset's row locks on PGlite: an apartment reset evicts its app; a door event is checked.
  const api = (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: installer.token, body }).then((r) => r.body);
  const site = await api('POST', '/sites', { kind: 'community', name: 'Embedded', timeZone: 'UTC' });
  const flat = await api('POST', `/buildings/${(await api('POST', `/sites/${site.id}/buildings`, { name: 'A' })).id}/apartments`, { number: '1' });
  await api('PUT', `/sites/${site.id}/app-licences`, { units: 1 });
  const code = await api('POST', `/apartments/${flat.id}/app-registrations`);
  t.equal((await svc.api('POST', `/api/v1/app-registrations/${code.code}`, { token: null, body: {} })).status, 201);
  await api('POST', `/apartments/${flat.id}/app-registrations`);
  t.same(await api('POST', `/apartments/${flat.id}/reset`), { residentsRemoved: 0, credentialsRemoved: 0, appStationsRemoved: 1, codesRevoked: 1 });
  await svc.addDevice(installer.token, '0C11050B9816', { type: 0, relays: [{ name: 'Gate', dtmf: '#', enabled: true }] });
  await api('PATCH', '/devices/0C11050B9816', { siteId: site.id });
  t.same(await svc.service.calls.recordDoorEvent('0C11050B9816', { type: 'door-opened', eventId: 'x', relay: 1, method: 'dtmf', by: '5926100001', callId: 'c@x' }), { recorded: true });
  t.match((await api('GET', `/sites/${site.id}/door-events`)).items, [{ relay: 1, verified: { relay: true, call: false, by: false, at: null } }]);
});
