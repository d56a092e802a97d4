import { renameSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { firmwareImage } from '../../simulators/firmware-image.js';
import { knownDevice, uploadFirmware } from '../helpers/firmware.js';
import { FACTORY_SECRET, startTestService, waitFor } from '../helpers/service.js';

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
  const busy = await get(WITH);
  t.equal(busy.status, 503);
  const retry = Number(busy.headers.get('retry-after'));
  t.ok(retry >= 1 && retry <= 5, `Retry-After: ${retry} s`);
  t.equal(((await busy.json()) as any).error.code, 'download_busy');
  held.destroy();
  const after = await waitFor(() => get(WITH, { range: 'bytes=0-9' }).then(async (r) => (await r.arrayBuffer(), r.status)), (s) => s === 206);
  t.equal(after, 206, 'the slot is free again once the held download is gone');
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
