import t from 'tap';
import { apiAs, once, startTestService, waitFor } from '../helpers/service.js';

// Lift control (seed 004): apartment floor, building ground and start floor, residents' accessible floors,
// rendered into the credentials a terminal holds; a card calls the lift to its floors and no other.
const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const as = (token: string) => apiAs(svc.api, token);
const A = as(alice.token);
const created = async (p: Promise<{ status: number; body: any }>) => {
  const res = await p;
  if (res.status !== 201) throw new Error(JSON.stringify(res.body));
  return res.body;
};

t.test("an access terminal opens for a resident's card and enables exactly its floors", async (t) => {
  const site = await created(A.post('/sites', { kind: 'community', name: 'Lift Towers', timeZone: 'Europe/Berlin' }));
  const tower = await created(A.post(`/sites/${site.id}/buildings`, { name: 'Tower A', groundFloor: 'G1', startFloor: '-2' }));
  const a701 = await created(A.post(`/buildings/${tower.id}/apartments`, { number: '701', floor: '7' }));
  const a902 = await created(A.post(`/buildings/${tower.id}/apartments`, { number: '902', floor: '9' }));
  const lily = await created(A.post(`/apartments/${a701.id}/residents`, { firstName: 'Lily', lastName: 'Green', accessibleFloors: ['12'] }));
  const ryan = await created(A.post(`/apartments/${a902.id}/residents`, { firstName: 'Ryan', lastName: 'Chen' }));
  await created(A.post(`/residents/${lily.id}/credentials`, { kind: 'card', value: 'A1B2C3D4' }));
  await created(A.post(`/residents/${ryan.id}/credentials`, { kind: 'card', value: 'B2C3D4E5' }));

  const terminal = '0C1115000050';
  await svc.addDevice(alice.token, terminal, { type: 50, name: 'Lobby reader', relays: [{ name: 'Lobby door' }] });
  t.equal((await A.patch(`/devices/${terminal}`, { siteId: site.id, buildingId: tower.id })).status, 200);
  const sim = svc.device(terminal, { reconnect: { minMs: 50, maxMs: 200 } });
  sim.start();
  await once(sim, 'online');
  const credentials = () => sim.directory.get('credentials')?.content as any;
  await waitFor(() => credentials(), (c) => c?.cards?.length === 2);
  t.same(credentials().lift, [{ building: 'Tower A', groundFloor: 'G1', startFloor: '-2' }], "the building's lift frame reaches the terminal");

  t.same(await sim.presentCard('A1B2C3D4'), { opens: true, floors: ['7', '12'] }, "Lily's card: her floor 7 and her accessible floor 12");
  t.same(await sim.presentCard('B2C3D4E5'), { opens: true, floors: ['9'] }, "Ryan's card: his floor only");
  t.same(await sim.presentCard('FFFFFFFF'), { opens: false, floors: [] }, 'an unknown card opens nothing');
  const events = await waitFor(() => A.get(`/sites/${site.id}/door-events?pageSize=10`), (r) => r.body.items?.length === 2);
  t.same(events.body.items.map((e: any) => [e.method, e.floors]).sort(), [
    ['card', ['7', '12']],
    ['card', ['9']],
  ], 'the door log shows the floors each card enabled');

  // A property manager of the site gives Ryan every floor; the terminal gets it by itself.
  const pm = await created(A.post('/property-managers', { name: 'Paula', email: 'paula@lift.test', siteIds: [site.id] }));
  const P = as(pm.token.token);
  t.equal((await P.patch(`/residents/${ryan.id}`, { accessibleFloors: ['all'] })).status, 200);
  await waitFor(() => credentials(), (c) => c?.cards?.find((x: any) => x.number === 'B2C3D4E5')?.floors?.[0] === 'all');
  t.same(await sim.presentCard('B2C3D4E5'), { opens: true, floors: ['all'] });
  t.equal((await as(bob.token).patch(`/residents/${ryan.id}`, { accessibleFloors: ['3'] })).status, 404, "Bob cannot change Alice's resident");
  t.equal((await P.patch(`/residents/${lily.id}`, { accessibleFloors: ['129'] })).status, 400, 'a floor out of the lift range is refused');

  // The apartment's floor moves: the card follows.
  t.equal((await A.patch(`/apartments/${a701.id}`, { floor: '8' })).status, 200);
  await waitFor(() => credentials(), (c) => c?.cards?.find((x: any) => x.number === 'A1B2C3D4')?.floors?.includes('8'));
  t.same(await sim.presentCard('A1B2C3D4'), { opens: true, floors: ['8', '12'] });
  const contacts = await A.get(`/devices/${terminal}/directory`);
  t.same(contacts.body.documents.map((d: any) => d.name), ['credentials'], 'an access terminal holds credentials only');
});

t.test("the template carries the apartment's floor and the residents' accessible floors, both ways", async (t) => {
  const site = await created(A.post('/sites', { kind: 'community', name: 'Template lift', timeZone: 'Europe/Berlin' }));
  const csv = ['Building,Apt,FirstName,LastName,Accessible Floors,Floor', 'Tower A,101,Lily,Green,"5,7",1', 'Tower A,101,Tom,Green,All,', 'Tower A,001,,,,G0', 'Tower A,002,Ann,Low,"-3,-1",-2'].join('\n');
  const res = await svc.api('POST', `/api/v1/sites/${site.id}/import`, { token: alice.token, raw: csv, contentType: 'text/csv' });
  t.equal(res.status, 200, JSON.stringify(res.body));
  const building = (await A.get(`/sites/${site.id}/buildings`)).body.items[0];
  const apartments = (await A.get(`/buildings/${building.id}/apartments`)).body.items;
  t.same(apartments.map((a: any) => [a.number, a.floor]).sort(), [
    ['001', 'G0'],
    ['002', '-2'],
    ['101', '1'],
  ]);
  const exported = await (await fetch(`${svc.httpUrl}/api/v1/sites/${site.id}/export`, { headers: { authorization: `Bearer ${alice.token}` } })).text();
  const lines = exported.trim().split('\r\n');
  t.match(lines[0], /,Floor$/);
  t.match(lines[1], /^Tower A,,001,.*,G0$/);
  t.match(lines[2], /^Tower A,"'-3,-1",002,.*,'-2$/, "negative floors are written after a ' (they begin like a formula)");
  t.match(lines[3], /^Tower A,"5,7",101,.*,1$/);
  t.match(lines[4], /^Tower A,All,101,.*,1$/);
  const again = await svc.api('POST', `/api/v1/sites/${site.id}/import`, { token: alice.token, raw: exported, contentType: 'text/csv' });
  t.equal(again.body.updated, 0, 'the export imports back without change');
  t.equal(again.body.skipped, 4);
  const moved = await svc.api('POST', `/api/v1/sites/${site.id}/import`, { token: alice.token, raw: 'Building,Apt,Floor\nTower A,101,3', contentType: 'text/csv' });
  t.equal(moved.body.updated, 1, "a new floor for an apartment is a change");
  const bad = await svc.api('POST', `/api/v1/sites/${site.id}/import`, { token: alice.token, raw: 'Building,Apt,Floor\nTower A,101,G3', contentType: 'text/csv' });
  t.same(bad.body.error.details.invalid.map((f: any) => [f.line, f.column]), [[2, 'Floor']]);
});
