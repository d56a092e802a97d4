import { request } from 'node:http';
import { connect } from 'node:net';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { ADMIN_TOKEN, startTestService } from '../helpers/service.js';

// Whatever a client sends, the answer is ours: a stable code and message in the one error shape, never
// the words of fastify, V8's JSON parser, busboy or PostgreSQL (those go to the log).
const svc = await startTestService(t);

/** Phrases of the libraries behind the API; none may reach an answer. */
const LIBRARY_TEXT =
  /Unexpected (token|end|non-whitespace)|in JSON at position|Body is not valid|Body cannot be empty|Request body is too large|Unsupported Media Type|Boundary not found|terminated early|Malformed|prototype property|reach \w+ limit|violates|relation "|duplicate key|FST_|Client Error|not a valid url component|SyntaxError|probe-marker|fst_/;

interface Raw {
  status: number;
  text: string;
}

/** One request over a plain socket, the body sent whole (a test's guard against a hang, not a measure). */
const raw = (method: string, path: string, headers: Record<string, string>, body?: string | Buffer) =>
  new Promise<Raw>((resolve, reject) => {
    const req = request(`${svc.httpUrl}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }, signal: AbortSignal.timeout(60_000) }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });

const expectOurs = (t: Test, what: string, res: Raw, status: number, code: string, message?: RegExp) => {
  t.equal(res.status, status, `${what}: ${status}`);
  let body: any = null;
  try {
    body = JSON.parse(res.text);
  } catch {
    /* asserted below */
  }
  t.match(body, { error: { code, message: String } }, `${what}: ${code} in the error shape (${res.text.slice(0, 200)})`);
  t.ok(typeof body?.error === 'object' && body.error !== null && 'details' in body.error, `${what}: with details`);
  if (message) t.match(body?.error?.message, message, `${what}: our message`);
  t.notMatch(res.text, LIBRARY_TEXT, `${what}: no library text`);
};

const json = { 'content-type': 'application/json' };

t.test('malformed, empty and poisoned JSON bodies answer stable codes', async (t) => {
  expectOurs(t, 'cut-off JSON', await raw('POST', '/api/v1/installers', json, '{"name": "Ann", "email": '), 400, 'invalid_json', /^the body is not valid JSON$/);
  expectOurs(t, 'not JSON at all', await raw('POST', '/api/v1/installers', json, 'name=Ann'), 400, 'invalid_json', /^the body is not valid JSON$/);
  expectOurs(t, 'a __proto__ key', await raw('POST', '/api/v1/installers', json, '{"__proto__": {"admin": true}}'), 400, 'invalid_json');
  expectOurs(t, 'an empty body', await raw('POST', '/api/v1/installers', json, ''), 400, 'empty_body');
});

t.test('a body of a content type the route does not take is a 415', async (t) => {
  expectOurs(t, 'text/plain', await raw('POST', '/api/v1/installers', { 'content-type': 'text/plain' }, '{"name":"Ann","email":"ann@example.com"}'), 415, 'unsupported_media_type');
  expectOurs(t, 'application/xml', await raw('POST', '/api/v1/installers', { 'content-type': 'application/xml' }, '<installer/>'), 415, 'unsupported_media_type');
  expectOurs(t, 'no content type', await raw('POST', '/api/v1/installers', {}, 'Ann'), 415, 'unsupported_media_type');
  t.equal((await svc.sql("SELECT count(*)::int AS n FROM accounts WHERE email = 'ann@example.com'"))[0].n, 0, 'nothing was made');
});

t.test('an oversized JSON body is a 413 in our words', async (t) => {
  const big = JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10), email: 'big@example.com' });
  expectOurs(t, 'a 1 MiB name', await raw('POST', '/api/v1/installers', json, big), 413, 'payload_too_large', /^the body is larger than this route takes$/);
});

t.test('bad multipart bodies are a 400 or 413 of ours, answered, and leave no file behind', async (t) => {
  const incoming = () => readdirSync(join(svc.dataDir, 'firmware', 'incoming'));
  const mp = (body: string, type = 'multipart/form-data; boundary=XX') => raw('POST', '/api/v1/firmware', { 'content-type': type }, body);
  const part = (name: string, value: string, fileName?: string) =>
    `--XX\r\nContent-Disposition: form-data; name="${name}"${fileName ? `; filename="${fileName}"` : ''}\r\n\r\n${value}\r\n`;
  expectOurs(t, 'no boundary', await mp('abc', 'multipart/form-data'), 400, 'invalid_multipart');
  // The whole body is there before the route reads it: the cut-off file part must fail, not hang.
  expectOurs(t, 'a file part cut off', await mp(`${part('model', 'R29')}${part('version', '29.30.10.1')}--XX\r\nContent-Disposition: form-data; name="file"; filename="r29.bin"\r\n\r\nabcdef`), 400, 'invalid_multipart');
  expectOurs(t, 'a __proto__ field', await mp(`${part('__proto__', 'R29')}--XX--\r\n`), 400, 'invalid_multipart');
  expectOurs(t, 'too many parts', await mp(`${part('file', 'x', 'r29.bin')}${Array.from({ length: 30 }, () => part('changelog', 'x')).join('')}--XX--\r\n`), 413, 'too_many_parts');
  t.same(incoming(), [], 'no temporary file is left');
  t.equal((await svc.sql('SELECT count(*)::int AS n FROM firmware'))[0].n, 0, 'no catalogue row');
});

t.test('refusals fastify and Node answer themselves carry the same shape', async (t) => {
  expectOurs(t, 'an undecodable path parameter', await raw('GET', '/api/v1/devices/%E0%A4%A', {}), 400, 'invalid_url');
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(new URL(svc.httpUrl).port), '127.0.0.1', () => socket.write('GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (text += c));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
  const [head, body] = answer.split('\r\n\r\n');
  t.match(head, /^HTTP\/1\.1 400 /, 'malformed HTTP is a 400');
  expectOurs(t, 'malformed HTTP', { status: 400, text: body ?? '' }, 400, 'bad_request');
});

t.test('database errors answer a stable code; PostgreSQL’s words stay in the log', async (t) => {
  // A constraint the service does not know of, and a refusal with text of its own, both raised by PostgreSQL.
  await svc.sql('CREATE UNIQUE INDEX errors_test_unique_name ON accounts (name)');
  await svc.sql(`CREATE FUNCTION errors_test_refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'probe-marker % refused', NEW.name; END $$ LANGUAGE plpgsql`);
  await svc.sql(`CREATE TRIGGER errors_test_refuse BEFORE INSERT ON accounts FOR EACH ROW WHEN (NEW.name = 'Refused') EXECUTE FUNCTION errors_test_refuse()`);
  t.teardown(async () => {
    await svc.sql('DROP TRIGGER IF EXISTS errors_test_refuse ON accounts');
    await svc.sql('DROP INDEX IF EXISTS errors_test_unique_name');
  });
  const first = await svc.api('POST', '/api/v1/installers', { body: { name: 'Twin', email: 'twin1@example.com' } });
  t.equal(first.status, 201);
  const twin = await svc.api('POST', '/api/v1/installers', { body: { name: 'Twin', email: 'twin2@example.com' } });
  expectOurs(t, 'a unique constraint', { status: twin.status, text: JSON.stringify(twin.body) }, 409, 'conflict', /^the record already exists$/);
  const refused = await svc.api('POST', '/api/v1/installers', { body: { name: 'Refused', email: 'refused@example.com' } });
  expectOurs(t, 'a raised exception', { status: refused.status, text: JSON.stringify(refused.body) }, 500, 'internal_error', /^internal error$/);
  t.equal((await svc.sql("SELECT count(*)::int AS n FROM accounts WHERE email LIKE 'twin2@%' OR email LIKE 'refused@%'"))[0].n, 0, 'nothing was written');
});
