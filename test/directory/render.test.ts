import t from 'tap';
import { liftFloors, renderSite, type SiteSnapshot } from '../../src/directory/render.js';

// The pure rendering: who gets which list, from one site snapshot.
const at = new Date('2026-11-01T00:00:00Z');
const snapshot = (over: Partial<SiteSnapshot['site']> = {}): SiteSnapshot => ({
  site: { id: 's', name: 'Seaside', timeZone: 'Europe/Berlin', contactDisplay: 'first-last', pinMode: 'pin', ...over },
  buildings: [
    { id: 'bA', name: 'A', groundFloor: 'G1', startFloor: '-2' },
    { id: 'bB', name: 'B', groundFloor: null, startFloor: null },
  ],
  apartments: [
    { id: 'a1', buildingId: 'bA', number: '101', name: 'Green', floor: '1', contactPreference: { mode: 'group' }, webRelayId: 0 },
    { id: 'a2', buildingId: 'bB', number: '201', name: null, floor: null, contactPreference: { mode: 'sequence', steps: ['indoor-monitors', 'landlines', 'app-accounts'] }, webRelayId: 1 },
  ],
  residents: [
    { id: 'r2', apartmentId: 'a1', role: 'family', firstName: 'Tom', lastName: 'Green', mobile: null, landlines: [], accessibleFloors: ['7', '5'], createdAt: new Date(at.getTime() + 1) },
    { id: 'r1', apartmentId: 'a1', role: 'main', firstName: 'Lily', lastName: 'Green', mobile: null, landlines: [], accessibleFloors: [], createdAt: at },
    { id: 'r3', apartmentId: 'a2', role: 'main', firstName: 'Ryan', lastName: 'Chen', mobile: { countryCode: '+49', number: '170' }, landlines: ['0301', '0302'], accessibleFloors: ['all'], createdAt: at },
  ],
  credentials: [
    { apartmentId: 'a1', residentId: 'r1', kind: 'pin', value: '1111', validFrom: null, validUntil: null },
    { apartmentId: 'a1', residentId: 'r2', kind: 'card', value: 'C0FE', validFrom: null, validUntil: null },
    { apartmentId: 'a2', residentId: 'r3', kind: 'pin', value: '2222', validFrom: at, validUntil: null },
    { apartmentId: 'a2', residentId: 'r3', kind: 'card', value: 'ABCD', validFrom: null, validUntil: null },
  ],
  devices: [
    { mac: 'GATE', type: '0', name: 'Main gate', sipNumber: '1', location: 'Street', buildingId: null, apartmentId: null },
    { mac: 'DOORB', type: '0', name: 'B door', sipNumber: '2', location: null, buildingId: 'bB', apartmentId: null },
    { mac: 'ACCESS', type: '50', name: 'Garage', sipNumber: '3', location: null, buildingId: null, apartmentId: null },
    { mac: 'MON1', type: '2', name: 'Kitchen', sipNumber: '4', location: null, buildingId: 'bA', apartmentId: 'a1' },
    { mac: 'MON2', type: '2', name: 'Hall', sipNumber: '5', location: null, buildingId: 'bB', apartmentId: 'a2' },
    { mac: 'GUARD', type: '3', name: 'Guard', sipNumber: '6', location: null, buildingId: null, apartmentId: null },
  ],
});
const render = (s: SiteSnapshot) => new Map(renderSite(s).map((r) => [r.mac, { timeZone: r.timeZone, docs: new Map(r.documents.map((d) => [d.name, JSON.parse(d.body.toString())])) }]));

t.test('who gets which list (entrances in MAC order)', async (t) => {
  const r = render(snapshot());
  t.same([...r.get('GATE')!.docs.keys()], ['contacts', 'credentials'], 'a door phone: contacts and credentials');
  t.same([...r.get('ACCESS')!.docs.keys()], ['credentials'], 'an access terminal: credentials only');
  t.same([...r.get('MON1')!.docs.keys()], ['contacts'], 'an indoor monitor: its door phones');
  t.same([...r.get('GUARD')!.docs.keys()], ['contacts'], 'a guard phone calls apartments but opens nothing');
  t.equal(r.get('MON2')!.timeZone, 'Europe/Berlin');

  t.same(r.get('GATE')!.docs.get('contacts').apartments.map((a: any) => a.apartment), ['101', '201'], 'the public area serves every apartment');
  t.same(r.get('DOORB')!.docs.get('contacts').apartments.map((a: any) => a.apartment), ['201'], "a building's door phone serves its building");
  t.same(r.get('DOORB')!.docs.get('credentials').pins.map((p: any) => p.code), ['2222'], "and accepts only its building's PINs");
  t.same(r.get('GATE')!.docs.get('credentials'), {
    pinMode: 'pin',
    pins: [
      { code: '1111', apartment: '101', building: 'A', validFrom: null, validUntil: null, floors: ['1'] },
      { code: '2222', apartment: '201', building: 'B', validFrom: at.toISOString(), validUntil: null, floors: ['all'] },
    ],
    cards: [
      { number: 'C0FE', apartment: '101', building: 'A', validFrom: null, validUntil: null, floors: ['1', '5', '7'] },
      { number: 'ABCD', apartment: '201', building: 'B', validFrom: null, validUntil: null, floors: ['all'] },
    ],
    lift: [
      { building: 'A', groundFloor: 'G1', startFloor: '-2' },
      { building: 'B', groundFloor: null, startFloor: null },
    ],
  });
  t.same(r.get('DOORB')!.docs.get('credentials').lift, [{ building: 'B', groundFloor: null, startFloor: null }], "a building's door phone: its building's lift only");
  t.same(r.get('MON1')!.docs.get('contacts').entrances.map((e: any) => e.name), ['Main gate', 'Guard'], "monitor in A: the public area's door and guard phones, not B's door");
  t.same(r.get('MON2')!.docs.get('contacts').entrances.map((e: any) => e.name), ['B door', 'Main gate', 'Guard'], "monitor in B: B's door phone too");
});

t.test('names, calls and order', async (t) => {
  const gate = render(snapshot()).get('GATE')!.docs.get('contacts');
  t.same(gate.apartments[0].residents, ['Lily Green', 'Tom Green'], 'the main resident first');
  t.same(gate.apartments[0].call, { mode: 'group', steps: [{ step: 'group', targets: [{ type: 'indoor-monitor', name: 'Kitchen', sipNumber: '4' }] }] });
  t.same(gate.apartments[1].call, {
    mode: 'sequence',
    steps: [
      { step: 'indoor-monitors', targets: [{ type: 'indoor-monitor', name: 'Hall', sipNumber: '5' }] },
      { step: 'landlines', targets: [{ type: 'landline', number: '0301' }, { type: 'landline', number: '0302' }] },
      { step: 'app-accounts', targets: [] },
    ],
  });
  t.same(render(snapshot({ contactDisplay: 'last-first' })).get('GATE')!.docs.get('contacts').apartments[1].residents, ['Chen Ryan']);
  t.equal(render(snapshot({ pinMode: 'apt-pin' })).get('GATE')!.docs.get('credentials').pinMode, 'apt-pin');
});

t.test('the same directory renders the same bytes, whatever the order it was read in', async (t) => {
  const a = snapshot();
  const b = snapshot();
  b.apartments.reverse();
  b.residents.reverse();
  b.credentials.reverse();
  b.devices.reverse();
  const hashes = (s: SiteSnapshot) => renderSite(s).map((r) => `${r.mac}:${r.documents.map((d) => d.sha256).join(',')}`).sort();
  t.same(hashes(b), hashes(a));
  const c = snapshot();
  c.credentials = c.credentials.filter((x) => x.value !== '1111');
  const changed = renderSite(c).filter((r, i) => r.documents.map((d) => d.sha256).join() !== renderSite(a)[i]!.documents.map((d) => d.sha256).join()).map((r) => r.mac);
  t.same(changed, ['GATE', 'ACCESS'], 'a revoked PIN of building A changes exactly the lists that held it');
});

t.test("a PIN's or card's floors: the resident's accessible floors and the apartment's floor, in the lift's order", async (t) => {
  t.same(liftFloors(['7', 'G0', '-3', '12'], '2'), ['G0', '-3', '2', '7', '12']);
  t.same(liftFloors(['5'], '5'), ['5'], 'the apartment floor once');
  t.same(liftFloors([], null), [], 'no lift data: no floors');
  t.same(liftFloors(['5', 'all'], '3'), ['all'], 'All Floors');
  t.same(liftFloors(['G2', 'G0', 'G1'], null), ['G0', 'G1', 'G2']);
});
