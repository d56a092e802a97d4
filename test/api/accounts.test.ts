import t from 'tap';
import { startTestService } from '../helpers/service.js';

const svc = await startTestService(t);

t.test('every /api/v1 route needs a valid bearer token', async (t) => {
  const none = await svc.api('GET', '/api/v1/devices', { token: null });
  t.equal(none.status, 401);
  t.match(none.body, { error: { code: 'unauthorized', message: /bearer/ } });
  const wrong = await svc.api('GET', '/api/v1/devices', { token: 'ic_not_a_real_token' });
  t.equal(wrong.status, 401);
  t.equal(wrong.body.error.code, 'unauthorized');
  const malformed = await svc.api('GET', '/api/v1/mac-library', { token: null, body: undefined });
  t.equal(malformed.status, 401);
});

t.test('a distributor creates installers; the token works once issued', async (t) => {
  const res = await svc.api('POST', '/api/v1/installers', { body: { name: 'Ryan Chen', email: 'Ryan@Example.com' } });
  t.equal(res.status, 201);
  t.match(res.body.installer, { role: 'installer', name: 'Ryan Chen', email: 'ryan@example.com' });
  t.match(res.body.token.token, /^ic_/);
  const me = await svc.api('GET', '/api/v1/me', { token: res.body.token.token });
  t.equal(me.status, 200);
  t.equal(me.body.id, res.body.installer.id);

  const dup = await svc.api('POST', '/api/v1/installers', { body: { name: 'Other', email: 'ryan@example.com' } });
  t.equal(dup.status, 409);
  t.equal(dup.body.error.code, 'email_taken');

  const stored = await svc.sql('select token_hash from api_tokens where id = $1', [res.body.token.id]);
  t.not(stored[0].token_hash, res.body.token.token, 'tokens are stored hashed');
});

t.test('an installer cannot act as a distributor', async (t) => {
  const installer = await svc.createInstaller();
  const res = await svc.api('POST', '/api/v1/installers', { token: installer.token, body: { name: 'X', email: 'x@example.com' } });
  t.equal(res.status, 403);
  t.equal(res.body.error.code, 'forbidden');
  t.equal((await svc.sql("select count(*)::int as n from accounts where email = 'x@example.com'"))[0].n, 0, 'nothing written');
  t.equal((await svc.api('GET', '/api/v1/installers', { token: installer.token })).status, 403);
});

t.test('bad installer bodies are 400 and write nothing', async (t) => {
  const before = (await svc.sql('select count(*)::int as n from accounts'))[0].n;
  const cases = [{}, { name: '', email: 'a@b.co' }, { name: 'A', email: 'not-an-email' }, { name: 'A', email: 'a@b.co', role: 'distributor' }];
  for (const body of cases) {
    const res = await svc.api('POST', '/api/v1/installers', { body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.body.error.code, 'validation_error');
  }
  t.equal((await svc.sql('select count(*)::int as n from accounts'))[0].n, before);
});

t.test('tokens can be revoked, by their owner or a distributor', async (t) => {
  const installer = await svc.createInstaller();
  const second = await svc.api('POST', `/api/v1/installers/${installer.id}/tokens`);
  t.equal(second.status, 201);
  t.equal((await svc.api('GET', '/api/v1/me', { token: second.body.token })).status, 200);

  const revoke = await svc.api('DELETE', `/api/v1/tokens/${second.body.id}`, { token: installer.token });
  t.equal(revoke.status, 204);
  t.equal((await svc.api('GET', '/api/v1/me', { token: second.body.token })).status, 401, 'revoked token refused');
  t.equal((await svc.api('GET', '/api/v1/me', { token: installer.token })).status, 200, 'other token still valid');

  const other = await svc.createInstaller();
  const mine = await svc.api('POST', `/api/v1/installers/${installer.id}/tokens`);
  t.equal((await svc.api('DELETE', `/api/v1/tokens/${mine.body.id}`, { token: other.token })).status, 404, "another installer's token is not found");
  t.equal((await svc.api('DELETE', `/api/v1/tokens/${mine.body.id}`)).status, 204, 'a distributor revokes any token');
  t.equal((await svc.api('POST', '/api/v1/installers/00000000-0000-4000-8000-000000000000/tokens')).status, 404);
});

t.test('the installer list is paginated', async (t) => {
  const res = await svc.api('GET', '/api/v1/installers?pageSize=2&page=1');
  t.equal(res.status, 200);
  t.equal(res.body.items.length, 2);
  t.ok(res.body.total >= 4);
  t.equal((await svc.api('GET', '/api/v1/installers?pageSize=501')).status, 400);
});
