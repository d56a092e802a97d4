import t from 'tap';
import { planLine, routeCall, type RoutingSite, type Station } from '../../src/calls/routing.js';

// Site: public door phone, building A (door phone, apartments 101 and 102), building B (apartment 101).
const apartments = [
  { id: 'a101', buildingId: 'A', number: '101', contactPreference: { mode: 'group' as const } },
  { id: 'a102', buildingId: 'A', number: '102', contactPreference: { mode: 'sequence' as const, steps: ['indoor-monitors' as const, 'app-accounts' as const], stepTimeoutSeconds: 15 } },
  { id: 'b101', buildingId: 'B', number: '101', contactPreference: { mode: 'group' as const } },
];
const st = (sipNumber: string, type: string, buildingId: string | null, apartmentId: string | null): Station => ({ sipNumber, kind: type === 'app' ? 'app' : 'device', type, buildingId, apartmentId });
const publicDoor = st('1000000001', '0', null, null);
const doorA = st('1000000002', '1', 'A', null);
const guard = st('1000000003', '3', null, null);
const monitor101 = st('2000000101', '2', 'A', 'a101');
const app101 = st('3000000101', 'app', null, 'a101');
const monitor102 = st('2000000102', '2', 'A', 'a102');
const app102 = st('3000000102', 'app', null, 'a102');
const monitorB101 = st('2000000201', '2', 'B', 'b101');
const access = st('1000000050', '50', 'A', null);
const site = (communityCalls: boolean): RoutingSite => ({
  directory: { site: { id: 's', installerId: 'i', communityCalls }, apartments, placements: [] },
  stations: [publicDoor, doorA, guard, monitor101, app101, monitor102, app102, monitorB101, access],
});

t.test('a door phone rings an apartment it serves: group at once, sequence step by step', async (t) => {
  t.same(routeCall(doorA, '101', site(false)), { action: 'ring', stepTimeoutSeconds: 0, steps: [['2000000101', '3000000101']], apartmentId: 'a101' }, 'group: monitors and apps together');
  const seq = routeCall(doorA, '102', site(false));
  t.same(seq, { action: 'ring', stepTimeoutSeconds: 15, steps: [['2000000102'], ['3000000102']], apartmentId: 'a102' }, 'sequence: monitors, then apps, per the preference');
  t.equal(planLine(seq), 'ring 15 2000000102/3000000102');
  t.match(routeCall(doorA, '999', site(false)), { action: 'refuse', status: 404 });
});

t.test('apartment numbers resolve within what the caller serves', async (t) => {
  t.match(routeCall(publicDoor, '101', site(false)), { action: 'refuse', status: 485 }, 'two buildings have 101: ambiguous at the public door');
  t.match(routeCall(doorA, '101', site(false)), { apartmentId: 'a101' }, "building A's door phone means A's 101");
  t.match(routeCall(st('1000000009', '0', 'B', null), '102', site(false)), { action: 'refuse', status: 404 }, "B's door phone does not reach A's 102");
});

t.test('monitors and apps: entrances serving them, their own apartment, others only with community calls', async (t) => {
  t.match(routeCall(app101, doorA.sipNumber, site(false)), { action: 'ring', steps: [[doorA.sipNumber]] }, 'an app calls its building door phone');
  t.match(routeCall(app101, publicDoor.sipNumber, site(false)), { action: 'ring' }, 'and the public one');
  t.match(routeCall(monitorB101, doorA.sipNumber, site(false)), { action: 'refuse', status: 403 }, "not another building's door phone");
  t.match(routeCall(app101, monitor101.sipNumber, site(false)), { action: 'ring' }, 'its own monitor');
  t.match(routeCall(app101, monitor102.sipNumber, site(false)), { action: 'refuse', status: 403, reason: 'Not in address book' });
  t.match(routeCall(app101, monitor102.sipNumber, site(true)), { action: 'ring' }, 'with community calls on');
  t.match(routeCall(monitor101, '102', site(false)), { action: 'refuse', status: 403 }, 'apartment to apartment needs community calls');
  t.match(routeCall(monitor101, '102', site(true)), { action: 'ring', apartmentId: 'a102' });
  t.match(routeCall(guard, monitorB101.sipNumber, site(false)), { action: 'ring' }, 'a guard phone calls anyone of its site');
  t.match(routeCall(access, '101', site(false)), { action: 'refuse', status: 403 }, 'an access control terminal places no calls');
  t.match(routeCall(app101, '5926100001', site(false)), { action: 'refuse', status: 404 }, 'a number outside the site is not found');
});

t.test('the caller never rings itself; an apartment with nobody to ring is refused', async (t) => {
  const alone: RoutingSite = { ...site(false), stations: [doorA] };
  t.match(routeCall(doorA, '101', alone), { action: 'refuse', status: 480, apartmentId: 'a101' });
  t.match(routeCall(monitor101, monitor101.sipNumber, site(false)), { action: 'refuse', status: 404 });
});
