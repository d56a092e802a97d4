import t from 'tap';
import { DeviceKeys, deriveDeviceKey } from '../../src/devices/device-key.js';

const verifyDeviceKey = (secret: string, mac: string, key: string | Buffer | undefined) => new DeviceKeys(secret).verify(mac, key);

const SECRET = 'test-factory-secret-0123456789abcdef';
// The test vector published in docs/device-protocol.md.
const VECTOR = 'ff3897d62228e9ad702d2b525327f36fe3201db284686cf420bb673449328b1e';

t.test('the device key matches the documented test vector', async (t) => {
  t.equal(deriveDeviceKey(SECRET, '0C11050B9814'), VECTOR);
});

t.test('verification accepts only the exact key', async (t) => {
  t.ok(verifyDeviceKey(SECRET, '0C11050B9814', VECTOR));
  t.ok(verifyDeviceKey(SECRET, '0C11050B9814', Buffer.from(VECTOR)));
  t.notOk(verifyDeviceKey(SECRET, '0C11050B9814', VECTOR.toUpperCase()));
  t.notOk(verifyDeviceKey(SECRET, '0C11050B9815', VECTOR));
  t.notOk(verifyDeviceKey(SECRET, '0C11050B9814', VECTOR.slice(0, 63)));
  t.notOk(verifyDeviceKey(SECRET, '0C11050B9814', undefined));
  t.notOk(verifyDeviceKey('another-secret-abcdefgh', '0C11050B9814', VECTOR));
});

t.test('a remembered key still refuses wrong ones, and a wrong guess is not remembered', async (t) => {
  const keys = new DeviceKeys(SECRET);
  t.notOk(keys.verify('0C11050B9814', 'f'.repeat(64)));
  t.ok(keys.verify('0C11050B9814', VECTOR));
  t.ok(keys.verify('0C11050B9814', VECTOR), 'the remembered key');
  t.notOk(keys.verify('0C11050B9814', 'f'.repeat(64)), 'a wrong key after the right one');
  keys.forget('0C11050B9814');
  t.ok(keys.verify('0C11050B9814', VECTOR), 'derived again after forgetting');
});
