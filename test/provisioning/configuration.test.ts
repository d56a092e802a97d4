import { createHash } from 'node:crypto';
import t from 'tap';
import { deriveDeviceKey } from '../../src/devices/device-key.js';
import { MAX_COMMAND_BYTES } from '../../src/provisioning/configuration.js';
import { FACTORY_SECRET, helloProcessed, startTestService, waitFor } from '../helpers/service.js';

// How the effective configuration reaches a device: the same bytes by push (MQTT) and pull (HTTP), as a
// whole that replaces the previous one, and never in a command over 64 KiB.

const svc = await startTestService(t);
const { token } = await svc.createInstaller();
const other = await svc.createInstaller();
const finished = ['succeeded', 'failed', 'expired', 'canceled'];
const jobOf = (id: string) => svc.api('GET', `/api/v1/jobs/${id}`, { token }).then((r) => r.body);
const done = (id: string) => waitFor(() => jobOf(id), (j) => finished.includes(j.state));
const basic = (mac: string) => `Basic ${Buffer.from(`${mac}:${deriveDeviceKey(FACTORY_SECRET, mac)}`).toString('base64')}`;
const pull = (mac: string) => fetch(`${svc.httpUrl}/autop/${mac}.cfg`, { headers: { authorization: basic(mac) } });
let n = 0x100;
const newMac = () => `0C1106${(n++).toString(16).toUpperCase().padStart(6, '0')}`;

async function readyDevice(mac: string) {
  await svc.addDevice(token, mac);
  const device = svc.device(mac, { reconnect: { minMs: 50, maxMs: 100 } });
  device.start();
  await waitFor(() => device.configHash, Boolean); // provisioned on its first boot
  return device;
}

t.test('after one-time Autop, push and pull carry the same bytes and the next hello provisions nothing', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const once1 = (await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Once.Only = 1' } })).body.job;
  t.equal((await done(once1.id)).state, 'succeeded');
  t.equal(device.config.get('Config.Once.Only'), '1', 'the one-time line was carried out');
  const command = device.received.find((c) => c.id === once1.id)!;
  t.same(command.params, { lines: [{ key: 'Config.Once.Only', value: '1' }] }, 'one-time lines are {key, value} objects');
  t.notMatch(command.config, /Config\.Once\.Only/, 'they are not part of the configuration the command carries beside them');

  const pulled = await pull(mac);
  const text = await pulled.text();
  const lastConfig = [...device.received].reverse().find((c) => c.config !== undefined)!;
  t.equal(text, lastConfig.config, 'pull serves the bytes the last push carried');
  t.equal(pulled.headers.get('x-config-hash'), device.configHash);
  t.equal(createHash('sha256').update(text).digest('hex'), device.configHash);

  const provisionsBefore = device.received.filter((c) => c.kind === 'provision').length;
  const processed = helloProcessed(svc, mac);
  await device.reboot();
  await processed;
  await waitFor(() => svc.api('GET', `/api/v1/jobs?mac=${mac}&pageSize=100`, { token }).then((r) => r.body.items), (js: any[]) => js.every((j) => finished.includes(j.state)));
  t.equal(device.received.filter((c) => c.kind === 'provision').length, provisionsBefore, 'no extra provisioning after the hello');
  t.equal((await svc.api('GET', `/api/v1/jobs?mac=${mac}&kind=provision`, { token })).body.total, 1, 'only the first boot was provisioned');
  await device.stop();
});

t.test('a line removed from the regular Autop leaves the device', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const first = (await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: ['Config.Keep.Me = 1', 'Config.Drop.Me = 2'] } })).body.job;
  await done(first.id);
  t.equal(device.config.get('Config.Drop.Me'), '2');
  const second = (await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: ['Config.Keep.Me = 1'] } })).body.job;
  t.equal((await done(second.id)).state, 'succeeded');
  t.equal(device.config.get('Config.Keep.Me'), '1');
  t.notOk(device.config.has('Config.Drop.Me'), 'the removed key went back to its default');
  t.notMatch(await (await pull(mac)).text(), /Config\.Drop\.Me/);
  const sent = device.received.find((c) => c.id === second.id)!;
  t.same(sent.params, {}, 'the command never repeats the configuration in params');
  await device.stop();
});

t.test('commands stay within 64 KiB: a large configuration travels as a document fetched by hash', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const commands = Array.from({ length: 1000 }, (_, i) => `Config.Large.Key${i} = ${'v'.repeat(500)}`);
  const regular = (await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands } })).body.job;
  t.equal((await done(regular.id)).state, 'succeeded');
  const sent = device.received.find((c) => c.id === regular.id)!;
  const size = device.sizes.find((s) => s.id === regular.id)!.bytes;
  t.ok(size <= MAX_COMMAND_BYTES, `the command is ${size} bytes`);
  t.equal(sent.config, undefined, 'not inline');
  t.match(sent.configDocument, { sha256: sent.configHash, url: `${svc.service.publicUrl}/documents/${sent.configHash}` });
  t.equal(device.config.get('Config.Large.Key999'), 'v'.repeat(500), 'the device fetched and applied it');
  const text = await (await pull(mac)).text();
  t.equal(createHash('sha256').update(text).digest('hex'), sent.configHash, 'pull serves the bytes the document holds');
  t.equal(sent.configDocument!.size, Buffer.byteLength(text));

  const once1 = (await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: Array.from({ length: 1000 }, (_, i) => `Config.Once.Big${i} = ${'w'.repeat(500)}`) } })).body.job;
  t.equal((await done(once1.id)).state, 'succeeded');
  const onceSent = device.received.find((c) => c.id === once1.id)!;
  t.ok(device.sizes.find((s) => s.id === once1.id)!.bytes <= MAX_COMMAND_BYTES);
  t.match(onceSent.params, { linesDocument: { sha256: /^[0-9a-f]{64}$/ } }, 'large one-time lines travel as a document too');
  t.equal(device.config.get('Config.Once.Big999'), 'w'.repeat(500));
  t.ok(device.sizes.every((s) => s.bytes <= MAX_COMMAND_BYTES), 'no command of this device ever exceeded 64 KiB');

  // The document as a device fetches it.
  const url = sent.configDocument!.url;
  const gz = await fetch(url, { headers: { authorization: basic(mac), 'accept-encoding': 'gzip' } });
  t.equal(gz.status, 200);
  t.equal(gz.headers.get('etag'), `"${sent.configHash}-gzip"`, 'the compressed form has its own ETag');
  const plain = await fetch(url, { headers: { authorization: basic(mac), 'accept-encoding': 'gzip;q=0, identity' } });
  t.equal(plain.headers.get('content-encoding'), null, 'gzip;q=0 is honoured');
  t.equal(plain.headers.get('etag'), `"${sent.configHash}"`);
  t.equal(await plain.text(), text);
  t.equal(gz.headers.get('content-encoding'), 'gzip', 'compressed on the way');
  t.equal(await gz.text(), text, 'and the same bytes once decompressed');
  const ranged = await fetch(url, { headers: { authorization: basic(mac), range: 'bytes=0-9' } });
  t.equal(ranged.status, 206);
  t.equal(await ranged.text(), text.slice(0, 10));
  t.equal((await fetch(url, { headers: { authorization: basic(mac), 'if-none-match': `"${sent.configHash}"` } })).status, 304);
  t.equal((await fetch(url)).status, 401, 'no credentials');
  const stranger = newMac();
  await svc.addDevice(other.token, stranger);
  t.equal((await fetch(url, { headers: { authorization: basic(stranger) } })).status, 404, "another device cannot fetch this device's document");
  await device.stop();
});

t.test('the API limit on Autop lines and its OpenAPI maxItems agree', async (t) => {
  const spec = (await svc.api('GET', '/docs/json', { token: null })).body;
  const body = spec.paths['/api/v1/devices/{mac}/autop'].put.requestBody.content['application/json'].schema;
  const array = body.properties.commands.anyOf.find((s: any) => s.type === 'array');
  t.equal(array.maxItems, 1000);
  const mac = newMac();
  await svc.addDevice(token, mac);
  const over = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: Array.from({ length: 1001 }, (_, i) => `Config.K${i} = 1`) } });
  t.equal(over.status, 400);
  const exactly = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: Array.from({ length: 1000 }, (_, i) => `Config.K${i} = 1`) } });
  t.equal(exactly.status, 202);
});
