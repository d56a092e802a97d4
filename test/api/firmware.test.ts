import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { seedFirmware, fixtureManifest } from '../../scripts/seed.js';
import { firmwareImage } from '../../simulators/firmware-image.js';
import { uploadFirmware } from '../helpers/firmware.js';
import { ADMIN_TOKEN, startTestService } from '../helpers/service.js';

const MAX = 200_000;
const svc = await startTestService(t, { FIRMWARE_MAX_BYTES: String(MAX) });
const installer = await svc.createInstaller();
const storedFiles = () => readdirSync(join(svc.dataDir, 'firmware')).filter((f) => f !== 'incoming');
const incoming = () => readdirSync(join(svc.dataDir, 'firmware', 'incoming'));
const firmwareRows = async () => Number((await svc.sql('SELECT count(*) AS n FROM firmware'))[0].n);

t.test('a distributor uploads firmware; it is listed, stored on disk and hashed', async (t) => {
  const image = firmwareImage('X916', '916.30.10.90', 150_000);
  const res = await uploadFirmware(svc, { model: 'x916', version: '916.30.10.90', changelog: 'face model update', image });
  t.equal(res.status, 201, JSON.stringify(res.body));
  t.match(res.body, { model: 'X916', version: '916.30.10.90', changelog: 'face model update', size: 150_000 });
  const sha = (await import('node:crypto')).createHash('sha256').update(image).digest('hex');
  t.equal(res.body.sha256, sha, 'the sha256 is the image’s');
  t.same(readFileSync(join(svc.dataDir, 'firmware', `${res.body.id}.bin`)), image, 'the file on disk is the upload');
  t.same(incoming(), [], 'no temporary file is left');

  const one = await svc.api('GET', `/api/v1/firmware/${res.body.id}`, { token: installer.token });
  t.equal(one.status, 200, 'installers read the catalogue');
  t.same(Object.keys(one.body).sort(), ['changelog', 'createdAt', 'id', 'model', 'sha256', 'size', 'version']);
  const list = await svc.api('GET', '/api/v1/firmware?model=X916', { token: installer.token });
  t.equal(list.body.total, 1);
  t.equal(list.body.items[0].id, res.body.id);
  t.equal((await svc.api('GET', '/api/v1/firmware?model=R29')).body.total, 0, 'filtered by model');

  const again = await uploadFirmware(svc, { model: 'X916', version: '916.30.10.90', image });
  t.equal(again.status, 409, 'the same model and version twice');
  t.equal(again.body.error.code, 'firmware_exists');
  t.equal(storedFiles().length, 1, 'the refused duplicate left no file');
});

t.test('bad uploads are refused with a clear error and leave nothing behind', async (t) => {
  const before = await firmwareRows();
  const filesBefore = storedFiles().length;
  const cases: [string, Parameters<typeof uploadFirmware>[1], number, string][] = [
    ['an installer', { token: installer.token, version: '29.30.10.1' }, 403, 'forbidden'],
    ['an empty file', { image: Buffer.alloc(0), version: '29.30.10.2' }, 400, 'empty_file'],
    ['an oversized file', { image: Buffer.alloc(MAX + 1, 1), version: '29.30.10.3' }, 413, 'payload_too_large'],
    ['a version of another model', { model: 'R29', version: '916.30.10.4' }, 400, 'version_model_mismatch'],
    ['a version not in dotted form', { model: 'R29', version: 'v29-beta' }, 400, 'version_model_mismatch'],
    ['a path-like file name', { version: '29.30.10.5', fileName: '../../etc/passwd' }, 400, 'invalid_file_name'],
    ['a file name with a folder', { version: '29.30.10.6', fileName: 'images/r29.bin' }, 400, 'invalid_file_name'],
    ['an unknown field', { version: '29.30.10.7', fields: { owner: 'me' } }, 400, 'validation_error'],
    ['a bad model name', { model: 'R29; DROP', version: '29.30.10.8' }, 400, 'validation_error'],
  ];
  for (const [what, upload, status, code] of cases) {
    const res = await uploadFirmware(svc, upload);
    t.equal(res.status, status, `${what}: ${status}`);
    t.equal(res.body?.error?.code, code, `${what}: ${code} (${res.body?.error?.message})`);
  }
  const json = await svc.api('POST', '/api/v1/firmware', { body: { model: 'R29', version: '29.30.10.9' } });
  t.equal(json.status, 415, 'JSON instead of multipart');
  t.equal(json.body.error.code, 'unsupported_media_type');
  const octets = await svc.api('POST', '/api/v1/firmware', { raw: Buffer.from('abc'), contentType: 'application/octet-stream' });
  t.equal(octets.status, 415, 'a bare octet stream');
  const noFile = await fetch(`${svc.httpUrl}/api/v1/firmware`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, body: (() => { const f = new FormData(); f.set('model', 'R29'); f.set('version', '29.30.10.10'); return f; })() });
  t.equal(noFile.status, 400, 'no file part');
  t.equal(await firmwareRows(), before, 'no catalogue row was written');
  t.equal(storedFiles().length, filesBefore, 'no image was kept');
  t.same(incoming(), [], 'no temporary file is left');
});

t.test('npm run seed loads the firmware fixtures, and running it again changes nothing', async (t) => {
  const first = await seedFirmware(svc.httpUrl, ADMIN_TOKEN, () => {});
  t.equal(first.uploaded, fixtureManifest().length);
  const second = await seedFirmware(svc.httpUrl, ADMIN_TOKEN, () => {});
  t.same(second, { uploaded: 0, present: fixtureManifest().length });
  const models = (await svc.api('GET', '/api/v1/firmware?pageSize=50')).body.items.map((f: any) => f.model);
  for (const m of ['R29', 'S532', 'X916', 'C313', 'E18', 'IXGW-TGW']) t.ok(models.includes(m), `${m} is in the catalogue`);
});

t.test('deleting firmware removes its file; unknown ids are 404', async (t) => {
  const res = await uploadFirmware(svc, { model: 'E18', version: '18.30.11.1' });
  const path = join(svc.dataDir, 'firmware', `${res.body.id}.bin`);
  t.ok(existsSync(path));
  t.equal((await svc.api('DELETE', `/api/v1/firmware/${res.body.id}`, { token: installer.token })).status, 403, 'not an installer');
  t.equal((await svc.api('DELETE', `/api/v1/firmware/${res.body.id}`)).status, 204);
  t.notOk(existsSync(path), 'the image is gone');
  t.equal((await svc.api('GET', `/api/v1/firmware/${res.body.id}`)).status, 404);
  t.equal((await svc.api('DELETE', `/api/v1/firmware/${res.body.id}`)).status, 404);
  t.equal((await svc.api('GET', '/api/v1/firmware/not-a-uuid')).status, 400);
});
