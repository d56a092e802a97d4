import t from 'tap';
import type { Test } from 'tap';
import { ADMIN_TOKEN, startTestService } from '../helpers/service.js';

// Text from the API is checked at the boundary: a NUL (which PostgreSQL cannot store) or another control
// character is a 400 with the error body, never a 500, and nothing is written.
const svc = await startTestService(t);
const installer = await svc.createInstaller();
const token = installer.token;
const MAC = '0C1105C00001';
await svc.addDevice(token, MAC, { relays: [{ name: 'Door' }] });
const NUL = '\u0000';

const expect400 = async (t: Test, method: string, path: string, body?: unknown, opts: { token?: string } = {}) => {
  const res = await svc.api(method, path, { token: opts.token ?? token, body });
  t.equal(res.status, 400, `${method} ${path} ${JSON.stringify(body ?? '')}`);
  t.match(res.body, { error: { code: 'validation_error', message: /control characters/ } }, 'the error says why');
  return res;
};

t.test('device name, location and relay name with a NUL or a line break are refused', async (t) => {
  const before = (await svc.api('GET', `/api/v1/devices/${MAC}`, { token })).body;
  await expect400(t, 'PATCH', `/api/v1/devices/${MAC}`, { name: `Gate${NUL}1` });
  await expect400(t, 'PATCH', `/api/v1/devices/${MAC}`, { location: `North${NUL}` });
  await expect400(t, 'PATCH', `/api/v1/devices/${MAC}`, { relays: [{ name: `Do${NUL}or` }] });
  await expect400(t, 'PATCH', `/api/v1/devices/${MAC}`, { name: 'Gate\n1' });
  await svc.api('POST', '/api/v1/mac-library', { token, body: { mac: '0C1105C00002' } });
  await expect400(t, 'POST', '/api/v1/devices', { mac: '0C1105C00002', name: `X${NUL}`, type: 0 });
  t.equal((await svc.api('GET', '/api/v1/devices/0C1105C00002', { token })).status, 404, 'no device was made');
  const after = (await svc.api('GET', `/api/v1/devices/${MAC}`, { token })).body;
  t.same(after, before, 'the device is unchanged');
});

t.test('an installer name with a NUL is refused', async (t) => {
  const before = (await svc.api('GET', '/api/v1/installers?pageSize=500')).body.total;
  await expect400(t, 'POST', '/api/v1/installers', { name: `Ryan${NUL}Chen`, email: 'ryan@example.com' }, { token: ADMIN_TOKEN });
  t.equal((await svc.api('GET', '/api/v1/installers?pageSize=500')).body.total, before, 'no account was made');
});

t.test('search and model filters with a NUL are refused', async (t) => {
  for (const path of ['/api/v1/devices?search=%00', '/api/v1/mac-library?search=%00', '/api/v1/firmware?model=%00', '/api/v1/upgrades?model=%00', `/api/v1/devices?search=a%00b`]) {
    await expect400(t, 'GET', path);
  }
});

t.test('firmware upload fields with a NUL are refused', async (t) => {
  const form = new FormData();
  form.append('model', 'R29');
  form.append('version', `29.30.10.2${NUL}`);
  form.append('file', new Blob([Buffer.from('image')]), 'r29.bin');
  const res = await fetch(`${svc.httpUrl}/api/v1/firmware`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, body: form });
  t.equal(res.status, 400);
  t.match(await res.json(), { error: { code: 'validation_error' } });
  t.equal((await svc.sql('select count(*)::int as n from firmware'))[0].n, 0, 'nothing in the catalogue');
});
