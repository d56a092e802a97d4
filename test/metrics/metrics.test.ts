import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import fastifySwagger from '@fastify/swagger';
import Fastify from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import t from 'tap';
import { metricsRoutes } from '../../src/api/routes/metrics.js';
import { freePort } from '../../src/infra/net.js';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { ClusterMetrics } from '../../src/metrics/cluster.js';
import { Metrics, withDeadline, type MetricsEndpoint } from '../../src/metrics/registry.js';

// Two fake processes of one deployment (a gateway and an engine, each with its own Metrics and instance)
// publish to the real Redis under a prefix of their own; what /metrics answers is read as Prometheus text.

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (no escapes in our label values). */
function parse(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[k!] = v!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

const matching = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
const total = (samples: Sample[], name: string, labels: Record<string, string> = {}) => matching(samples, name, labels).reduce((sum, s) => sum + s.value, 0);

/** Polls until `accept` holds. The timeout is a guard against a hang, not a measure: a loaded machine passes. */
async function until<T>(probe: () => Promise<T>, accept: (v: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (accept(v)) return v;
    if (Date.now() > deadline) throw new Error(`still not there after ${timeoutMs} ms: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A pino logger whose lines the test reads. */
function capturingLogger() {
  const lines: { level: number; msg: string; err?: string }[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), warnings: () => lines.filter((l) => l.level === 40) };
}

/** GET /metrics through the route plugin, on a bare fastify with the API's zod compilers and OpenAPI. */
async function scrape(t: { teardown(fn: () => unknown): void }, endpoint: MetricsEndpoint) {
  const app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(fastifySwagger, { openapi: { info: { title: 't', version: '0' } }, transform: jsonSchemaTransform });
  await app.register(metricsRoutes, { metrics: endpoint });
  t.teardown(() => app.close());
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  return { res, app };
}

t.test('the gateway and the engine publish to Redis; /metrics shows both, each series under its role and instance', async (t) => {
  const prefix = `test-metrics-${randomUUID()}`;
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  t.teardown(async () => {
    await deleteKeysUnder(redis, prefix);
    redis.disconnect();
  });

  // Staleness is judged by the test's clock, which stands still unless the test moves it: a machine too
  // busy to publish on time cannot make a fresh snapshot look stale here.
  let clock = Date.parse('2026-06-01T12:00:00Z');
  const now = () => clock;
  const STALE_MS = 60_000;
  const gateway = new Metrics({ role: 'gateway', instance: 'gw-host:101' });
  const engine = new Metrics({ role: 'engine', instance: 'engine-host:202' });
  const gatewayCluster = new ClusterMetrics({ metrics: gateway, redis, queuePrefix: prefix, intervalMs: 200, staleAfterMs: STALE_MS, now });
  const engineCluster = new ClusterMetrics({ metrics: engine, redis, queuePrefix: prefix, intervalMs: 200, staleAfterMs: STALE_MS, now });
  t.teardown(() => Promise.all([gatewayCluster.stop(), engineCluster.stop()]));
  t.equal(engineCluster.key, `${prefix}:metrics`);

  // The gateway holds three sessions, accepted three devices and refused two; it made provision jobs on hello.
  gateway.gatewaySessions.set(3);
  for (const code of [0, 0, 0, 4, 5]) gateway.connect(code);
  gateway.gatewayMessagesReceived.inc(10);
  gateway.dispatchedToDevice(Date.now() - 20);
  gateway.jobCreated('provision', 2);
  const download = gateway.downloadStarted();
  download.sent(4096);
  // The engine made jobs too, finished one on its answer 1.5 s after delivery, and reads its queue.
  engine.jobCreated('provision', 3);
  engine.jobCreated('autop');
  const finishedAt = Date.now();
  engine.jobFinished('autop', 'succeeded', finishedAt - 1500, finishedAt);
  engine.jobFinished('reboot', 'failed');
  engine.watchQueue('provisioning', async () => ({ waiting: 4, delayed: 1, active: 2 }));

  gatewayCluster.start(); // publishes once connected and every 200 ms
  // Both snapshots are in Redis before anything is read (a publish before a connection is up is lost).
  await until(async () => {
    await Promise.all([gatewayCluster.publish(), engineCluster.publish()]);
    return redis.hkeys(`${prefix}:metrics`);
  }, (keys) => keys.includes('gw-host:101') && keys.includes('engine-host:202'));
  t.same((await redis.hkeys(`${prefix}:metrics`)).sort(), ['engine-host:202', 'gw-host:101'], 'one field per process');
  t.ok((await redis.pttl(`${prefix}:metrics`)) > 0, 'the hash expires when nobody publishes any more');

  // The engine's entry in Redis is older than what it holds now: /metrics uses the fresh local one.
  engine.jobCreated('autop');

  const { res, app } = await scrape(t, engineCluster);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  const text = res.body;
  t.match(text, '# TYPE intercom_gateway_sessions gauge\n');
  t.match(text, 'intercom_gateway_sessions{role="gateway",instance="gw-host:101"} 3\n');
  t.match(text, 'intercom_gateway_sessions{role="engine",instance="engine-host:202"} 0\n');
  t.match(text, 'intercom_gateway_connects_total{result="accepted",role="gateway",instance="gw-host:101"} 3\n');
  t.match(text, 'intercom_gateway_connects_total{result="refused_4",role="gateway",instance="gw-host:101"} 1\n');
  t.match(text, 'intercom_gateway_connects_total{result="refused_5",role="gateway",instance="gw-host:101"} 1\n');
  t.match(text, 'intercom_queue_jobs{queue="provisioning",state="waiting",role="engine",instance="engine-host:202"} 4\n');
  t.match(text, 'intercom_job_dispatch_to_answer_seconds_bucket{le="1",kind="autop",role="engine",instance="engine-host:202"} 0\n');
  t.match(text, 'intercom_job_dispatch_to_answer_seconds_bucket{le="2.5",kind="autop",role="engine",instance="engine-host:202"} 1\n');
  t.match(text, 'intercom_job_dispatch_to_answer_seconds_sum{kind="autop",role="engine",instance="engine-host:202"} 1.5\n');

  const samples = parse(text);
  t.equal(total(samples, 'intercom_jobs_created_total', { kind: 'provision' }), 5, 'provision jobs of both processes: 2 + 3');
  t.same(
    matching(samples, 'intercom_jobs_created_total', { kind: 'provision' }).map((s) => [s.labels.instance, s.value]).sort(),
    [
      ['engine-host:202', 3],
      ['gw-host:101', 2],
    ],
    'each process keeps its own series',
  );
  t.equal(total(samples, 'intercom_jobs_created_total', { kind: 'autop', instance: 'engine-host:202' }), 2, 'the fresh local snapshot, not the published one');
  t.equal(total(samples, 'intercom_jobs_finished_total', { kind: 'reboot', state: 'failed' }), 1);
  t.equal(total(samples, 'intercom_gateway_messages_received_total'), 10);
  t.equal(total(samples, 'intercom_gateway_dispatch_to_device_seconds_count'), 1);
  t.same(
    Object.fromEntries(matching(samples, 'intercom_queue_jobs', { queue: 'provisioning' }).map((s) => [s.labels.state, s.value])),
    { waiting: 4, delayed: 1, active: 2 },
  );
  t.equal(total(samples, 'intercom_firmware_downloads_in_flight', { instance: 'gw-host:101' }), 1);
  t.equal(total(samples, 'intercom_firmware_download_bytes_total'), 4096);
  download.end();
  download.end();
  t.equal((await gateway.firmwareDownloadsInFlight.get()).values[0]?.value, 0, 'a download ended twice counts once');
  // Node.js process metrics of both processes, under the same labels (kept, though prom-client would omit some).
  for (const instance of ['gw-host:101', 'engine-host:202']) {
    t.equal(matching(samples, 'process_resident_memory_bytes', { instance }).length, 1, `resident memory of ${instance}`);
    t.equal(matching(samples, 'nodejs_eventloop_lag_seconds', { instance }).length, 1, `event loop lag of ${instance}`);
    t.equal(matching(samples, 'process_start_time_seconds', { instance }).length, 1, `start time of ${instance}`);
  }
  t.notOk(samples.some((s) => !s.labels.role || !s.labels.instance), 'every series names its role and instance');

  const doc = app.swagger() as { paths: Record<string, { get?: { tags?: string[]; security?: unknown[] } }> };
  t.same(doc.paths['/metrics']?.get?.tags, ['operations'], 'documented in OpenAPI');
  t.same(doc.paths['/metrics']?.get?.security, [], 'without authentication');

  // A process that stopped without removing its entry (killed) is dropped once stale, and removed from Redis.
  const dead = new Metrics({ role: 'gateway', instance: 'dead-host:9', defaultMetrics: false });
  dead.gatewaySessions.set(7);
  await redis.hset(`${prefix}:metrics`, 'dead-host:9', JSON.stringify({ at: now() - STALE_MS - 1, role: 'gateway', instance: 'dead-host:9', metrics: await dead.snapshot() }));
  await redis.hset(`${prefix}:metrics`, 'garbled:1', '{not json');
  const withoutDead = await engineCluster.render();
  t.notMatch(withoutDead.body, 'dead-host:9', 'a snapshot older than staleAfterMs is not shown');
  t.match(withoutDead.body, 'instance="gw-host:101"', 'the live gateway still is');
  await until(() => redis.hkeys(`${prefix}:metrics`), (keys) => !keys.includes('dead-host:9') && !keys.includes('garbled:1'));
  t.pass('the stale and the unreadable entries were removed from Redis');

  // A fresh entry of a third process is shown (the staleness is by age, not by name) until it is too old.
  await redis.hset(`${prefix}:metrics`, 'dead-host:9', JSON.stringify({ at: now(), role: 'gateway', instance: 'dead-host:9', metrics: await dead.snapshot() }));
  t.match((await engineCluster.render()).body, 'intercom_gateway_sessions{role="gateway",instance="dead-host:9"} 7\n');
  clock += STALE_MS;
  t.match((await engineCluster.render()).body, 'instance="dead-host:9"', 'still shown at exactly staleAfterMs');
  clock += 1;
  // The live gateway publishes on the new clock (the second publish surely started after the clock moved).
  await gatewayCluster.publish();
  await gatewayCluster.publish();
  const aged = (await engineCluster.render()).body;
  t.notMatch(aged, 'instance="dead-host:9"', 'dropped once older than staleAfterMs');
  t.match(aged, 'instance="gw-host:101"', 'the gateway that published since is still shown');

  // Stopping removes the process's own entry.
  await gatewayCluster.stop();
  t.equal(await redis.hexists(`${prefix}:metrics`, 'gw-host:101'), 0, 'the stopped gateway removed its entry');
  t.notMatch((await engineCluster.render()).body, 'gw-host:101');
});

t.test('Redis unreachable: /metrics answers with the local process alone, and the log says so once', async (t) => {
  const port = await freePort(); // closed again: nothing listens there
  const redis = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => {});
  t.teardown(() => redis.disconnect());
  const { logger, warnings } = capturingLogger();
  const metrics = new Metrics({ role: 'api', instance: 'api-host:303' });
  metrics.jobCreated('reboot', 4);
  const cluster = new ClusterMetrics({ metrics, redis, queuePrefix: `test-metrics-${randomUUID()}`, intervalMs: 100, timeoutMs: 300, logger });
  t.teardown(() => cluster.stop());

  const { res } = await scrape(t, cluster);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  t.match(res.body, 'intercom_jobs_created_total{kind="reboot",role="api",instance="api-host:303"} 4\n');
  t.match(res.body, 'process_resident_memory_bytes{role="api",instance="api-host:303"} ');
  t.equal(warnings().length, 1, 'the scrape found Redis away');
  t.notMatch(warnings()[0]?.err, /took longer than/, 'without waiting for Redis: its refusal, not the deadline, ended the read');
  cluster.start();
  await cluster.publish(); // resolves: a failed publication is logged, not thrown
  await cluster.render();
  t.equal(warnings().length, 1, 'one warning for the outage, not one per scrape or publication');
  t.match(warnings()[0]?.msg, /cannot reach Redis/);
  await cluster.stop(); // also without Redis
});

t.test('a Redis that stops answering: /metrics answers within the deadline', async (t) => {
  // Answers what the client sends on connecting (CLIENT SETINFO, the ready check's INFO), then nothing
  // more: Redis stuck, the connection open.
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    let ready = false;
    s.on('data', (data) => {
      if (ready) return;
      for (const command of String(data).split('*').slice(1)) {
        if (/\r\ninfo\r\n/i.test(command)) {
          s.write('$0\r\n\r\n');
          ready = true;
        } else s.write('+OK\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const redis = new Redis((server.address() as net.AddressInfo).port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  t.teardown(() => redis.disconnect());
  const { logger, warnings } = capturingLogger();
  const metrics = new Metrics({ role: 'api', instance: 'api-host:304', defaultMetrics: false });
  metrics.gatewaySessions.set(2);
  // ClusterMetrics talks over a duplicate of the connection it is given: the test waits until that one is ready.
  const duplicates: Redis[] = [];
  const duplicate = redis.duplicate.bind(redis);
  redis.duplicate = (override) => {
    const d = duplicate(override);
    duplicates.push(d);
    return d;
  };
  const cluster = new ClusterMetrics({ metrics, redis, queuePrefix: `test-metrics-${randomUUID()}`, timeoutMs: 300, logger });
  t.teardown(() => cluster.stop());
  const connection = duplicates[0]!;
  if (connection.status !== 'ready') await new Promise((resolve) => connection.once('ready', resolve));
  const started = Date.now();
  const { res } = await scrape(t, cluster);
  t.comment(`the scrape answered after ${Date.now() - started} ms (deadline 300 ms)`);
  t.equal(res.statusCode, 200);
  t.match(res.body, 'intercom_gateway_sessions{role="api",instance="api-host:304"} 2\n');
  t.equal(warnings().length, 1);
  t.match(warnings()[0]?.msg, /cannot reach Redis/);
  t.match(warnings()[0]?.err, /took longer than 300 ms|Command timed out/, 'a deadline ended the wait for the Redis that does not answer');
});

t.test('collect callbacks: a queue whose counts cannot be read loses its series instead of showing stale ones', async (t) => {
  const { logger, warnings } = capturingLogger();
  const metrics = new Metrics({ role: 'engine', instance: 'engine-host:1', defaultMetrics: false, collectTimeoutMs: 200, logger });
  let fail = false;
  metrics.watchQueue('provisioning', async () => {
    if (fail) throw new Error('Connection is closed.');
    return { waiting: 3, delayed: 0, active: 1 };
  });
  const stop = metrics.watchQueue('upgrades', () => new Promise(() => {})); // hangs
  let called = 0;
  metrics.onCollect(() => void called++);

  let text = (await metrics.render()).body;
  t.match(text, 'intercom_queue_jobs{queue="provisioning",state="waiting",role="engine",instance="engine-host:1"} 3\n');
  t.match(text, 'intercom_queue_jobs{queue="provisioning",state="delayed",role="engine",instance="engine-host:1"} 0\n');
  t.notMatch(text, 'queue="upgrades"', 'a hanging count is skipped after collectTimeoutMs');
  t.equal(called, 1);
  fail = true;
  text = (await metrics.render()).body;
  t.notMatch(text, 'queue="provisioning"', 'the failing queue shows nothing rather than its last counts');
  await metrics.render();
  t.equal(called, 3, 'the callbacks run before every snapshot');
  t.equal(warnings().length, 2, 'each failing callback warns once while it keeps failing');
  stop();
  fail = false;
  t.match((await metrics.render()).body, 'queue="provisioning"');
});

t.test('a deadline that fell due while the process was paused lets the answer that arrived meanwhile win', async (t) => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const peer = await accepted;
  t.teardown(() => {
    client.destroy();
    peer.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const answer = withDeadline(() => new Promise<string>((resolve) => client.once('data', (d) => resolve(String(d)))), 20, 'the answer');
  peer.write('pong'); // in the client's receive buffer once written (loopback)
  // The machine pauses this process past the deadline: the timer and the answer are both due when it runs again.
  const resumeAt = Date.now() + 200;
  while (Date.now() < resumeAt) {
    /* paused */
  }
  t.equal(await answer, 'pong', 'the answer, not "took longer than"');
});
