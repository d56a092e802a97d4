import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { startTestService } from '../helpers/service.js';

// Behind HAProxy every request comes from HAProxy's address: per-address limits (app registration codes)
// must see the client it names in X-Forwarded-For, and only when the proxy is trusted.
t.test('HTTP_TRUST_PROXY is a list of addresses or ranges', async (t) => {
  t.same(loadConfig({ HTTP_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8,fd00::/8' }).http.trustProxy, ['127.0.0.1', '10.0.0.0/8', 'fd00::/8']);
  t.same(loadConfig({}).http.trustProxy, []);
  for (const bad of ['haproxy', '10.0.0.0/33', '1.2.3.4/8/1']) t.throws(() => loadConfig({ HTTP_TRUST_PROXY: bad }), /HTTP_TRUST_PROXY/, bad);
});

t.test('redemption failures are counted per forwarded client when the proxy is trusted, per connection when not', async (t) => {
  const redeemAs = (baseUrl: string, client: string) =>
    fetch(`${baseUrl}/api/v1/app-registrations/AAAAAAAAAAAAAAAAAAAAAAAAAA`, { method: 'POST', headers: { 'x-forwarded-for': client, 'content-type': 'application/json' }, body: '{}' }).then((r) => r.status);

  const trusted = await startTestService(t, { HTTP_TRUST_PROXY: '127.0.0.1' });
  const statuses: number[] = [];
  for (let i = 0; i < 11; i++) statuses.push(await redeemAs(trusted.httpUrl, '198.51.100.7'));
  t.same(statuses, [...Array(10).fill(404), 429], 'one client is blocked after 10 failures');
  t.equal(await redeemAs(trusted.httpUrl, '198.51.100.8'), 404, 'another client behind the same proxy is not');

  const untrusted = await startTestService(t);
  for (let i = 0; i < 10; i++) await redeemAs(untrusted.httpUrl, `198.51.100.${i + 20}`);
  t.equal(await redeemAs(untrusted.httpUrl, '198.51.100.99'), 429, 'without trust, a forged header changes nothing: the connection address is counted');
});
