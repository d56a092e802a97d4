import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe } from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import pg from 'pg';
import t from 'tap';
import { startTestService } from '../helpers/service.js';

// What one job request costs PostgreSQL on the API side: statements sent by the request's own code (the
// engine, gateway and followers of the same process run outside its async context and are not counted).
const requests = new AsyncLocalStorage<string[]>();
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  const seen = requests.getStore();
  if (seen) seen.push(String(typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string })?.text).slice(0, 60));
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;
t.teardown(() => void (pg.Client.prototype.query = query));
// A request marked `x-count-statements` runs in a context of its own from the moment the server takes it.
const marked = new Map<string, string[]>();
subscribe('http.server.request.start', (message) => {
  const id = (message as { request: IncomingMessage }).request.headers['x-count-statements'];
  if (typeof id === 'string' && marked.has(id)) requests.enterWith(marked.get(id)!);
});

const svc = await startTestService(t);
const installer = await svc.createInstaller();
await svc.addDevice(installer.token, '0C1119000001');

/** Injects one request into the service's app; answers its status and the statements it sent. */
async function cost(url: string, headers: Record<string, string> = {}, body: unknown = { commands: 'Config.Test.Cost = 1' }) {
  const statements: string[] = [];
  const id = String(marked.size);
  marked.set(id, statements);
  const res = await svc.api('POST', url, { token: installer.token, headers: { 'x-count-statements': id, ...headers }, body });
  return { status: res.status, statements, replayed: res.headers.get('idempotent-replayed') === 'true', body: res.body };
}

t.test('a job request costs at most three PostgreSQL round trips once its token and device are known', async (t) => {
  const first = await cost('/api/v1/devices/0C1119000001/autop/once');
  t.equal(first.status, 202);
  const warm = await cost('/api/v1/devices/0C1119000001/autop/once');
  t.equal(warm.status, 202);
  t.ok(warm.statements.length <= 3, `statements: ${JSON.stringify(warm.statements)}`);
  t.equal(warm.statements.length, 1, 'one statement: the job, its audit row in it');

  const reboot = await cost('/api/v1/devices/0C1119000001/reboot', {}, {});
  t.equal(reboot.status, 202);
  t.equal(reboot.statements.length, 1, 'a reboot too');
});

t.test('with an Idempotency-Key: the statement making the job claims the key, one more stores the answer', async (t) => {
  const keyed = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-1' });
  t.equal(keyed.status, 202);
  t.same(keyed.statements.map((s) => s.split(/\s/)[0]!.toLowerCase()), ['with', 'update'], `statements: ${JSON.stringify(keyed.statements)}`);
  const retry = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-1' });
  t.equal(retry.status, 202);
  t.ok(retry.replayed, 'the retry is a replay');
  t.equal(retry.body.job.id, keyed.body.job.id, 'of the first answer');
  t.equal((await svc.sql(`select count(*)::int as n from jobs where kind = 'autop-once'`))[0].n, 3, 'the retry recorded no job (its work was rolled back)');
  const other = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-1' }, { commands: 'Config.Test.Other = 1' });
  t.equal(other.status, 422, 'the key used for another request is refused');
  t.equal(other.body.error.code, 'idempotency_key_reused');
});

const onceJobs = async () => (await svc.sql(`select count(*)::int as n from jobs where kind = 'autop-once'`))[0].n;

t.test('a retry while the first answer is not stored yet is told to retry; once that answer is lost, it gets the job ids', async (t) => {
  const first = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-2' });
  t.equal(first.status, 202);
  // As if the first request's second statement had not run yet (or never will: its process died).
  await svc.sql(`update idempotent_requests set body = null where key = 'cost-2'`);
  const before = await onceJobs();
  const early = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-2' });
  t.equal(early.status, 409);
  t.equal(early.body.error.code, 'idempotency_key_in_progress');
  await svc.sql(`update idempotent_requests set created_at = now() - interval '1 minute' where key = 'cost-2'`);
  const late = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-2' });
  t.equal(late.status, 409);
  t.equal(late.body.error.code, 'idempotency_key_unanswered');
  t.same(late.body.error.details.jobIds, [first.body.job.id], 'the first request\'s job, by id');
  t.equal(await onceJobs(), before, 'neither retry recorded a job');
});

t.test('a key past its time to live (not yet swept) is free again: the request runs afresh', async (t) => {
  const first = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-3' });
  t.equal(first.status, 202);
  await svc.sql(`update idempotent_requests set created_at = now() - interval '25 hours' where key = 'cost-3'`);
  const again = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-3' });
  t.equal(again.status, 202);
  t.notOk(again.replayed, 'not a replay');
  t.not(again.body.job.id, first.body.job.id, 'a new job');
  const replay = await cost('/api/v1/devices/0C1119000001/autop/once', { 'idempotency-key': 'cost-3' });
  t.ok(replay.replayed);
  t.equal(replay.body.job.id, again.body.job.id, 'the key now answers the new job');
});

t.test('a request of several statements claims its key in its transaction and replays the same way', async (t) => {
  const url = '/api/v1/devices/0C1119000001/autop';
  const body = { commands: 'Config.Test.Regular = 1' };
  const first = await svc.api('PUT', url, { token: installer.token, headers: { 'idempotency-key': 'cost-4' }, body });
  t.equal(first.status, 202);
  const retry = await svc.api('PUT', url, { token: installer.token, headers: { 'idempotency-key': 'cost-4' }, body });
  t.equal(retry.status, 202);
  t.equal(retry.headers.get('idempotent-replayed'), 'true');
  t.equal(retry.body.job.id, first.body.job.id);
  t.equal((await svc.sql(`select count(*)::int as n from jobs where kind = 'autop'`))[0].n, 1, 'one regular Autop job');
});
