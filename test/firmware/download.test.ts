import { renameSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { freePort } from '../../src/infra/net.js';
import { deleteKeysUnder } from '../../src/infra/redis.js';
import { SharedSemaphore } from '../../src/infra/shared-semaphore.js';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { firmwareImage } from '../../simulators/firmware-image.js';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { FACTORY_SECRET, startTestService, waitFor } from '../helpers/service.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

// One download at a time, so the cap can be seen with two requests.
const svc = await startTestService(t, { FIRMWARE_MAX_DOWNLOADS: '1' });
const installer = await svc.createInstaller();
const token = installer.token;
const SIZE = 4 * 1024 * 1024;
const image = firmwareImage('R29', '29.30.10.200', SIZE);
const sha256 = createHash('sha256').update(image).digest('hex');
const fw = (await uploadFirmware(svc, { model: 'R29', version: '29.30.10.200', image })).body;

const basic = (mac: string, key = deriveDeviceKey(FACTORY_SECRET, mac)) => `Basic ${Buffer.from(`${mac}:${key}`).toString('base64')}`;
const get = (mac: string, headers: Record<string, string> = {}, id = fw.id) => fetch(`${svc.httpUrl}/firmware/${id}/image`, { headers: { authorization: basic(mac), ...headers } });

const WITH = '0C1105D00001';
const WITHOUT = '0C1105D00002';
// Devices the service knows as R29s, offline so the upgrade job waits.
await knownDevice(svc, token, WITH, { offline: true });
await knownDevice(svc, token, WITHOUT, { offline: true });
const up = await svc.api('POST', '/api/v1/upgrades', { token, body: { firmwareId: fw.id, macs: [WITH] } });

t.test('only a device with an unfinished upgrade to the image may download it', async (t) => {
  t.equal(up.status, 201);
  t.equal((await fetch(`${svc.httpUrl}/firmware/${fw.id}/image`)).status, 401, 'no credentials');
  t.equal((await get(WITH, { authorization: basic(WITH, 'wrong-key') })).status, 401, 'a wrong device key');
  const other = await get(WITHOUT);
  t.equal(other.status, 403, 'a device without an upgrade to it');
  t.equal(((await other.json()) as any).error.code, 'no_upgrade');
  t.equal((await get(WITH, {}, '00000000-0000-4000-8000-000000000000')).status, 404, 'unknown firmware');
});

t.test('the whole image, with its SHA-256 as header and ETag', async (t) => {
  const res = await get(WITH);
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-firmware-sha256'), sha256);
  t.equal(res.headers.get('etag'), `"${sha256}"`);
  t.equal(res.headers.get('accept-ranges'), 'bytes');
  t.equal(res.headers.get('content-length'), String(SIZE));
  const body = Buffer.from(await res.arrayBuffer());
  t.equal(createHash('sha256').update(body).digest('hex'), sha256, 'the bytes are the image');
});

t.test('Range resumes a download; If-Range with another ETag gets the whole image', async (t) => {
  const part = await get(WITH, { range: `bytes=${SIZE - 1000}-` });
  t.equal(part.status, 206);
  t.equal(part.headers.get('content-range'), `bytes ${SIZE - 1000}-${SIZE - 1}/${SIZE}`);
  t.same(Buffer.from(await part.arrayBuffer()), image.subarray(SIZE - 1000));
  const middle = await get(WITH, { range: 'bytes=100-199', 'if-range': `"${sha256}"` });
  t.equal(middle.status, 206, 'If-Range with the current ETag keeps the range');
  t.same(Buffer.from(await middle.arrayBuffer()), image.subarray(100, 200));
  const changed = await get(WITH, { range: 'bytes=100-199', 'if-range': '"an-older-image"' });
  t.equal(changed.status, 200, 'If-Range with an old ETag: the whole new image');
  t.equal(changed.headers.get('content-length'), String(SIZE));
  await changed.arrayBuffer();
  const past = await get(WITH, { range: `bytes=${SIZE}-` });
  t.equal(past.status, 416);
  t.equal(past.headers.get('content-range'), `bytes */${SIZE}`);
});

t.test('over the download cap a device is told when to retry', async (t) => {
  // A download whose reader does not read holds its slot.
  const held = await new Promise<http.IncomingMessage>((resolve, reject) =>
    http.get(`${svc.httpUrl}/firmware/${fw.id}/image`, { headers: { authorization: basic(WITH) } }, resolve).on('error', reject),
  );
  t.equal(held.statusCode, 200);
  held.pause();
  t.equal(await svc.service.redis.client.zcard(`${svc.service.queuePrefix}:downloads`), 1, 'the slot is a lease in Redis, seen by every API process');
  const busy = await get(WITH);
  t.equal(busy.status, 503);
  const retry = Number(busy.headers.get('retry-after'));
  t.ok(retry >= 1 && retry <= 5, `Retry-After: ${retry} s`);
  t.equal(((await busy.json()) as any).error.code, 'download_busy');
  held.destroy();
  const after = await waitFor(() => get(WITH, { range: 'bytes=0-9' }).then(async (r) => (await r.arrayBuffer(), r.status)), (s) => s === 206);
  t.equal(after, 206, 'the slot is free again once the held download is gone');
});

t.test('a slot another API process holds counts here; when its lease runs out it is free', async (t) => {
  const key = `${svc.service.queuePrefix}:downloads`;
  const redis = svc.service.redis.client;
  await redis.zadd(key, Date.now() + 60_000, 'another-process');
  const busy = await get(WITH, { range: 'bytes=0-9' });
  t.equal(busy.status, 503, 'the cap of 1 is taken by the other process');
  await busy.arrayBuffer();
  await redis.zadd(key, Date.now() - 1, 'another-process');
  const res = await get(WITH, { range: 'bytes=0-9' });
  t.equal(res.status, 206, 'an expired lease (a process that died) no longer counts');
  await res.arrayBuffer();
  t.equal(await redis.zscore(key, 'another-process'), null, 'and is removed');
});

t.test('an image file missing on the server is a clear server error, and the slot is given back', async (t) => {
  const path = join(svc.dataDir, 'firmware', `${fw.id}.bin`);
  renameSync(path, `${path}.away`);
  const res = await get(WITH);
  t.equal(res.status, 500);
  t.equal(((await res.json()) as any).error.code, 'image_missing');
  renameSync(`${path}.away`, path);
  t.equal((await get(WITH, { range: 'bytes=0-9' })).status, 206, 'with a cap of 1, the failed request did not keep its slot');
});

t.test('HEAD answers the size, ETag and Accept-Ranges like GET, without a body', async (t) => {
  const head = await fetch(`${svc.httpUrl}/firmware/${fw.id}/image`, { method: 'HEAD', headers: { authorization: basic(WITH) } });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-length'), String(SIZE));
  t.equal(head.headers.get('etag'), `"${sha256}"`);
  t.equal(head.headers.get('accept-ranges'), 'bytes');
  t.equal(head.headers.get('x-firmware-sha256'), sha256);
  t.equal((await head.arrayBuffer()).byteLength, 0, 'no body');
  const part = await fetch(`${svc.httpUrl}/firmware/${fw.id}/image`, { method: 'HEAD', headers: { authorization: basic(WITH), range: 'bytes=100-' } });
  t.equal(part.status, 206);
  t.equal(part.headers.get('content-length'), String(SIZE - 100));
  t.equal(part.headers.get('content-range'), `bytes 100-${SIZE - 1}/${SIZE}`);
  t.equal((await fetch(`${svc.httpUrl}/firmware/${fw.id}/image`, { method: 'HEAD', headers: { authorization: basic(WITHOUT) } })).status, 403, 'HEAD is authorised like GET');
  const whole = await get(WITH);
  t.equal(whole.status, 200, 'HEAD took no download slot: a GET still gets the image with a cap of 1');
  await whole.arrayBuffer();
});

t.test('the download cap is shared by the API processes through Redis', async (t) => {
  const { key, inspect, clock } = sharedSlots(t);
  // Two API processes' worth of slots, a cap of 2 between them.
  const a = clock.semaphore({ capacity: 2, leaseMs: 10 * 60_000 });
  const b = clock.semaphore({ capacity: 2, leaseMs: 10 * 60_000 });

  const first = await a.acquire();
  const second = await b.acquire();
  t.ok(first && second, 'one slot on each process');
  t.equal(await a.acquire(), null, 'the third is refused on the first process');
  t.equal(await b.acquire(), null, 'and on the second');
  t.equal(await inspect.zcard(key), 2, 'two leases in the sorted set');

  first!.release();
  first!.release();
  await waitFor(() => inspect.zcard(key), (n) => n === 1, 5000);
  t.pass('a release gives back exactly one slot, however often it is called');
  const again = await b.acquire();
  t.ok(again, 'a released slot is taken again');
  t.equal(b.held, 2);
  t.equal(await a.acquire(), null);

  // Process b dies without releasing: its leases run out.
  clock.at += 10 * 60_000 - 1;
  t.equal(await a.acquire(), null, 'leases not yet expired still count');
  clock.at += 2;
  const afterExpiry = await a.acquire();
  t.ok(afterExpiry, 'an expired lease frees its slot');
  t.equal(await inspect.zcard(key), 1, 'the expired leases are gone from the set');
  afterExpiry!.release();
  second!.release();
  again!.release();
});

t.test('with Redis not answering, each process counts its own downloads against the cap', async (t) => {
  const port = await freePort(); // nothing listens there
  const slots = new SharedSemaphore({ capacity: 2, redis: new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true }), key: 'test-download-slots:down', timeoutMs: 100 });
  t.teardown(() => slots.close());
  const one = await slots.acquire();
  const two = await slots.acquire();
  t.ok(one && two, 'two local slots');
  t.equal(await slots.acquire(), null, 'the third is refused');
  one!.release();
  t.ok(await slots.acquire(), 'a released local slot is reusable');
});

t.test('a held slot is renewed while its download streams, so it outlives its first lease', async (t) => {
  const { key, inspect, clock } = sharedSlots(t);
  const a = clock.semaphore({ capacity: 1, leaseMs: 1000, renewMs: 20 });
  const b = clock.semaphore({ capacity: 1, leaseMs: 1000 });
  const held = await a.acquire();
  t.ok(held);
  clock.at += 900;
  await waitFor(() => inspect.zrange(key, 0, -1, 'WITHSCORES'), (r) => Number(r[1]) === clock.at + 1000, 5000);
  clock.at += 600; // past the first lease, within the renewed one
  t.equal(await b.acquire(), null, 'the renewed lease still holds the slot');
  held!.release();
  await waitFor(() => inspect.zcard(key), (n) => n === 0, 5000);
  t.ok(await b.acquire(), 'released, the slot is free');
});

/**
 * One Redis key of download slots for a test, under an injected clock (`clock.at`); `clock.semaphore`
 * makes one API process's slots on it. The key and the semaphores go when the test ends.
 */
function sharedSlots(t: { teardown(fn: () => unknown): void }) {
  const prefix = `test-download-slots:${randomBytes(6).toString('hex')}`;
  const key = `${prefix}:downloads`;
  const inspect = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const template = new Redis(REDIS_URL, { lazyConnect: true });
  const made: SharedSemaphore[] = [];
  const clock = {
    at: 1_000_000,
    semaphore(opts: { capacity: number; leaseMs: number; renewMs?: number }) {
      const slots = new SharedSemaphore({ ...opts, redis: template, key, now: () => clock.at });
      made.push(slots);
      return slots;
    },
  };
  t.teardown(async () => {
    await Promise.all(made.map((m) => m.close()));
    await deleteKeysUnder(inspect, prefix);
    inspect.disconnect();
  });
  return { key, inspect, clock };
}
