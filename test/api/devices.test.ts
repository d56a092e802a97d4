import t from 'tap';
import { startTestService } from '../helpers/service.js';

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const bob = await svc.createInstaller('Bob');
const deviceCount = async () => (await svc.sql('select count(*)::int as n from devices'))[0].n as number;
for (const mac of ['0C11050B9814', '0C11050B9815', '0C11050B9816', '0C11050B9817']) {
  await svc.api('POST', '/api/v1/mac-library', { token: alice.token, body: { mac } });
}
await svc.api('POST', '/api/v1/mac-library', { token: bob.token, body: { mac: 'BA0000000001' } });

t.test('a device binds a MAC of the installer’s library and gets a SIP account once', async (t) => {
  const res = await svc.api('POST', '/api/v1/devices', {
    token: alice.token,
    body: {
      mac: '0c:11:05:0b:98:14',
      name: 'Gate 2',
      type: 0,
      networkGroup: 2,
      location: 'North entrance',
      relays: [{ name: 'Door', dtmf: '#', enabled: true, accessMethods: ['homepage', 'pin', 'rf-card'] }],
      allowMonitoring: true,
    },
  });
  t.equal(res.status, 201);
  t.match(res.body, {
    mac: '0C11050B9814',
    name: 'Gate 2',
    type: 0,
    typeName: 'multi-tenant door phone',
    networkGroup: 2,
    location: 'North entrance',
    allowMonitoring: true,
    status: 'offline',
    lastConnectedAt: null,
    installerId: alice.id,
  });
  t.match(res.body.sipNumber, /^\d{10}$/);
  t.equal(res.body.sip.number, res.body.sipNumber);
  t.match(res.body.sip.password, /^[A-Za-z0-9]{16}$/);
  t.same(res.body.relays, [{ name: 'Door', dtmf: '#', enabled: true, accessMethods: ['homepage', 'pin', 'rf-card'] }]);

  const one = await svc.api('GET', '/api/v1/devices/0C11050B9814', { token: alice.token });
  t.equal(one.status, 200);
  t.notOk('sip' in one.body, 'no SIP password after creation');
  t.notOk(JSON.stringify(one.body).includes(res.body.sip.password));
  const list = await svc.api('GET', '/api/v1/devices', { token: alice.token });
  t.notOk(JSON.stringify(list.body).includes(res.body.sip.password), 'never in list responses');
});

t.test('every device type code of the portal and the IXGW gateway is accepted; SIP numbers are unique', async (t) => {
  const types: [string, number | string][] = [
    ['0C11050B9815', 2],
    ['0C11050B9816', 'ixgw'],
  ];
  const numbers = new Set<string>();
  for (const [mac, type] of types) {
    const res = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac, name: `Dev ${mac}`, type } });
    t.equal(res.status, 201);
    t.equal(res.body.type, type);
    numbers.add(res.body.sipNumber);
  }
  t.equal(numbers.size, 2);
  const ixgw = await svc.api('GET', '/api/v1/devices?type=ixgw', { token: alice.token });
  t.equal(ixgw.body.total, 1);
  t.equal(ixgw.body.items[0].typeName, 'Aiphone IXGW-(T)GW gateway adaptor');
});

t.test('the MAC must be the caller’s, in the library and unbound: 409 with the reason', async (t) => {
  const before = await deviceCount();
  const notInLibrary = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: 'DC0000000001', name: 'X', type: 1 } });
  t.equal(notInLibrary.status, 409);
  t.equal(notInLibrary.body.error.code, 'mac_not_in_library');
  const bobs = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: 'BA0000000001', name: 'X', type: 1 } });
  t.equal(bobs.status, 409);
  t.equal(bobs.body.error.code, 'mac_not_in_library');
  const bound = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: '0C11050B9814', name: 'Again', type: 1 } });
  t.equal(bound.status, 409);
  t.equal(bound.body.error.code, 'mac_already_bound');
  t.equal(await deviceCount(), before, 'nothing written');
});

t.test('invalid device bodies are 400 naming the field and write nothing', async (t) => {
  const before = await deviceCount();
  const cases: [unknown, RegExp][] = [
    [{ mac: '0C11050B9817', name: 'X', type: 7 }, /type/],
    [{ mac: '0C11050B9817', name: 'X', type: '0' }, /type/],
    [{ mac: '0C11050B9817', name: '', type: 0 }, /name/],
    [{ mac: '0C11050B9817', name: 'X', type: 0, relays: [{ name: 'R', accessMethods: ['telepathy'] }] }, /relays/],
    [{ mac: '0C11050B9817', name: 'X', type: 0, relays: [{ name: 'R', dtmf: '12345' }] }, /dtmf/],
    [{ mac: '0C11050B9817', name: 'X', type: 0, networkGroup: 0 }, /networkGroup/],
    [{ mac: '0C11050B9817', name: 'X', type: 0, sipPassword: 'mine' }, /sipPassword/],
    [{ mac: 'nope', name: 'X', type: 0 }, /nope/],
  ];
  for (const [body, field] of cases) {
    const res = await svc.api('POST', '/api/v1/devices', { token: alice.token, body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.match(res.body.error.message, field);
  }
  t.equal(await deviceCount(), before);
});

t.test('malformed and oversized bodies get the right status', async (t) => {
  const malformed = await svc.api('POST', '/api/v1/devices', { token: alice.token, raw: '{"mac": "0C1105', contentType: 'application/json' });
  t.equal(malformed.status, 400);
  t.ok(malformed.body.error.code);
  const xml = await svc.api('POST', '/api/v1/devices', { token: alice.token, raw: '<device/>', contentType: 'application/xml' });
  t.equal(xml.status, 415);
  t.equal(xml.body.error.code, 'unsupported_media_type');
  const big = await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: '0C11050B9817', name: 'x'.repeat(2 * 1024 * 1024), type: 0 } });
  t.equal(big.status, 413);
  t.equal(big.body.error.code, 'payload_too_large');
});

t.test('list searches MAC, name and SIP number and filters by status and type', async (t) => {
  const gate = (await svc.api('GET', '/api/v1/devices/0C11050B9814', { token: alice.token })).body;
  t.equal((await svc.api('GET', '/api/v1/devices?search=gate 2', { token: alice.token })).body.total, 1);
  t.equal((await svc.api('GET', '/api/v1/devices?search=0c:11:05:0b:98:14', { token: alice.token })).body.total, 1);
  t.equal((await svc.api('GET', `/api/v1/devices?search=${gate.sipNumber}`, { token: alice.token })).body.total, 1);
  t.equal((await svc.api('GET', '/api/v1/devices?status=offline', { token: alice.token })).body.total, 3);
  t.equal((await svc.api('GET', '/api/v1/devices?status=online', { token: alice.token })).body.total, 0);
  t.equal((await svc.api('GET', '/api/v1/devices?type=2', { token: alice.token })).body.total, 1);
  t.equal((await svc.api('GET', '/api/v1/devices?status=asleep', { token: alice.token })).status, 400);
  t.equal((await svc.api('GET', '/api/v1/devices?search=%25', { token: alice.token })).body.total, 0, 'LIKE wildcards are literal');
  const page = await svc.api('GET', '/api/v1/devices?pageSize=2&page=2', { token: alice.token });
  t.equal(page.body.items.length, 1);
  t.equal(page.body.total, 3);
});

t.test('installers see only their own devices; a distributor sees all', async (t) => {
  t.equal((await svc.api('GET', '/api/v1/devices', { token: bob.token })).body.total, 0);
  t.equal((await svc.api('GET', '/api/v1/devices/0C11050B9814', { token: bob.token })).status, 404);
  t.equal((await svc.api('PATCH', '/api/v1/devices/0C11050B9814', { token: bob.token, body: { name: 'Mine now' } })).status, 404);
  t.equal((await svc.api('DELETE', '/api/v1/devices/0C11050B9814', { token: bob.token })).status, 404);
  t.equal((await svc.api('GET', '/api/v1/devices')).body.total, 3);
  t.equal((await svc.api('GET', '/api/v1/devices/0C11050B9814', { token: alice.token })).body.name, 'Gate 2', 'unchanged');
});

t.test('PATCH changes only the given fields', async (t) => {
  const res = await svc.api('PATCH', '/api/v1/devices/0C11050B9814', { token: alice.token, body: { name: 'Gate 3', relays: [], type: 1 } });
  t.equal(res.status, 200);
  t.match(res.body, { name: 'Gate 3', relays: [], type: 1, networkGroup: 2, location: 'North entrance' });
  t.equal((await svc.api('PATCH', '/api/v1/devices/0C11050B9814', { token: alice.token, body: {} })).status, 400);
  t.equal((await svc.api('PATCH', '/api/v1/devices/0C11050B9814', { token: alice.token, body: { mac: 'AA0000000000' } })).status, 400);
});

t.test('DELETE unbinds the MAC, which stays in the library and can be bound again', async (t) => {
  t.equal((await svc.api('DELETE', '/api/v1/devices/0C11050B9816', { token: alice.token })).status, 204);
  t.equal((await svc.api('GET', '/api/v1/devices/0C11050B9816', { token: alice.token })).status, 404);
  const entry = await svc.api('GET', '/api/v1/mac-library/0C11050B9816', { token: alice.token });
  t.equal(entry.status, 200);
  t.equal(entry.body.owner, null);
  t.equal((await svc.api('POST', '/api/v1/devices', { token: alice.token, body: { mac: '0C11050B9816', name: 'Reused', type: 3 } })).status, 201);
});
