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

t.test('configuration lines: no inline comments, a # value is literal, an empty value unsets the key', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const commands = ['Config.Lines.Hash = #', 'Config.Lines.Inline = 0   # 0 UDP, 1 TCP', 'Config.Lines.Set = 1'];
  await done((await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands } })).body.job.id);
  t.equal(device.config.get('Config.Lines.Hash'), '#');
  t.equal(device.config.get('Config.Lines.Inline'), '0   # 0 UDP, 1 TCP', 'the value runs to the end of the line');
  t.equal(device.config.get('Config.DoorSetting.RELAY.DTMF1') ?? '#', '#');
  const emptied = await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: ['Config.Lines.Set ='] } });
  t.equal((await done(emptied.body.job.id)).state, 'succeeded');
  t.match(await (await pull(mac)).text(), /^Config\.Lines\.Set = ?$/m, 'the configuration carries the empty value');
  t.notOk(device.config.has('Config.Lines.Set'), 'an empty value unsets the key: the device default applies');
  await device.stop();
});

t.test('one-time lines are actions: their values stay until the key is set again, leaves the managed configuration, or a reset', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const regular = (commands: string[]) => svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands } }).then((r) => done(r.body.job.id));
  await regular(['Config.Shared.Key = regular', 'Config.Other = 1']);
  await done((await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: ['Config.Shared.Key = once', 'Config.Once.Only = 1'] } })).body.job.id);
  t.equal(device.config.get('Config.Shared.Key'), 'once', 'carried out over the configuration');
  t.equal(device.config.get('Config.Once.Only'), '1');

  await regular(['Config.Shared.Key = regular', 'Config.Other = 2']);
  t.equal(device.config.get('Config.Shared.Key'), 'regular', 'a later configuration that sets the key sets it again');
  t.equal(device.config.get('Config.Once.Only'), '1', 'a key the configuration does not set keeps its one-time value');

  const processed = helloProcessed(svc, mac);
  await device.reboot();
  await processed;
  t.equal(device.config.get('Config.Once.Only'), '1', 'kept across a reboot, and not carried out again');

  await regular(['Config.Other = 3']);
  t.notOk(device.config.has('Config.Shared.Key'), 'a managed key that leaves goes back to its default, not to the one-time value');
  t.equal(device.config.get('Config.Once.Only'), '1');

  const boots = device.boots.length;
  await done((await svc.api('POST', `/api/v1/devices/${mac}/reset`, { token, body: { mode: 'config' } })).body.job.id);
  await waitFor(() => device.boots.length > boots && device.configHash, Boolean);
  t.notOk(device.config.has('Config.Once.Only'), 'a reset clears it; provisioning afterwards does not bring it back');
  t.equal(device.config.get('Config.Other'), '3', 'the regular Autop does come back');
  await device.stop();
});

t.test('a config reset clears Autop-delivered network keys and keeps the network setup made at the device', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  await done((await svc.api('PUT', `/api/v1/devices/${mac}/autop`, { token, body: { commands: ['Config.Network.LAN.Type = 1'] } })).body.job.id);
  await done((await svc.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: ['Config.Network.VLAN.Id = 10'] } })).body.job.id);
  t.equal(device.config.get('Config.Network.VLAN.Id'), '10');
  const reset = async (mode: 'config' | 'factory') => {
    const boots = device.boots.length;
    await done((await svc.api('POST', `/api/v1/devices/${mac}/reset`, { token, body: { mode } })).body.job.id);
    await waitFor(() => device.boots.length > boots && device.configHash, Boolean);
  };
  await reset('config');
  t.notOk(device.config.has('Config.Network.VLAN.Id'), 'a one-time network key does not survive');
  t.equal(device.config.get('Config.Network.LAN.Type'), '1', 'a regular one comes back with the configuration after the reset');
  t.equal(device.network.get('Network.Mode'), 'dhcp', "the device's own network setup is kept");
  await reset('factory');
  t.equal(device.network.size, 0, 'a factory reset clears that too');
  await device.stop();
});

t.test('a device that stays connected asks to be provisioned again with a new hello', async (t) => {
  const mac = newMac();
  const device = await readyDevice(mac);
  const effective = device.configHash;
  const boots = device.boots.length;
  // As after `document_unavailable`: the device kept an older configuration and reports its hash.
  device.configHash = 'a'.repeat(64);
  const processed = helloProcessed(svc, mac);
  await device.sayHello();
  await processed;
  const provisions = await waitFor(
    () => svc.api('GET', `/api/v1/jobs?mac=${mac}&kind=provision`, { token }).then((r) => r.body.items),
    (items: any[]) => items.length === 2 && finished.includes(items[0].state),
  );
  t.equal(provisions[0].state, 'succeeded', 'the second hello of the session provisioned it');
  t.equal(device.configHash, effective, 'it runs the effective configuration again');
  t.equal(device.boots.length, boots, 'without reconnecting');
  await device.stop();
});
