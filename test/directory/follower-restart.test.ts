import t from 'tap';
import { createTestDatabase, startTestService, waitFor } from '../helpers/service.js';

// A directory change committed just before a crash (its change row written, its site not yet rendered)
// is rendered by the next start: the door phone still gets its new list.
t.test('a change committed just before a crash is rendered by the next start', async (t) => {
  const databaseUrl = await createTestDatabase(t);
  const first = await startTestService(t, { DATABASE_URL: databaseUrl });
  const installer = await first.createInstaller();
  const api = (method: string, path: string, body?: unknown) => first.api(method, `/api/v1${path}`, { token: installer.token, body });
  const site = (await api('POST', '/sites', { kind: 'community', name: 'Seaside', timeZone: 'UTC' })).body;
  const building = (await api('POST', `/sites/${site.id}/buildings`, { name: 'A' })).body;
  const apartment = (await api('POST', `/buildings/${building.id}/apartments`, { number: '101' })).body;
  const resident = (await api('POST', `/apartments/${apartment.id}/residents`, { firstName: 'Lily', lastName: 'Green' })).body;
  const gate = '0C1110000001';
  await first.addDevice(installer.token, gate, { type: 0 });
  await api('PATCH', `/devices/${gate}`, { siteId: site.id });
  await first.service.follower.settled();
  const rendered = async () => (await first.sql('select documents from directory_renders where mac = $1', [gate]))[0]?.documents as { name: string; sha256: string }[] | undefined;
  const before = await rendered();
  t.ok(before?.some((d) => d.name === 'credentials'), 'the door phone has a credential list');
  await first.service.close();

  // What a crashed process leaves: the PIN and its change row committed, nothing rendered.
  await first.sql(`insert into credentials (site_id, apartment_id, resident_id, kind, value, scope) values ($1, $2, $3, 'pin', '4321', 'site')`, [site.id, apartment.id, resident.id]);
  await first.sql('insert into directory_changes (site_id) values ($1)', [site.id]);

  const second = await startTestService(t, { DATABASE_URL: databaseUrl });
  await waitFor(() => second.sql('select count(*)::int as n from directory_changes'), (rows) => rows[0].n === 0);
  await second.service.follower.settled();
  const after = (await second.sql('select documents from directory_renders where mac = $1', [gate]))[0].documents as { name: string; sha256: string }[];
  t.not(after.find((d) => d.name === 'credentials')!.sha256, before!.find((d) => d.name === 'credentials')!.sha256, 'the list was rendered again on start');
  const view = await second.api('GET', `/api/v1/devices/${gate}/directory`, { token: installer.token });
  t.same(view.body.documents.find((d: any) => d.name === 'credentials').content.pins.map((p: any) => p.code), ['4321']);
  const jobs = (await second.api('GET', `/api/v1/jobs?mac=${gate}&kind=provision`, { token: installer.token })).body.items;
  t.ok(jobs.some((j: any) => j.state === 'queued'), 'and the offline door phone has a provisioning job waiting for it');
});
