import { createHmac, timingSafeEqual } from 'node:crypto';

/** The device key flashed at the factory: lowercase hex of HMAC-SHA256(factory secret, MAC). */
export function deriveDeviceKey(factorySecret: string, mac: string): string {
  return createHmac('sha256', factorySecret).update(mac).digest('hex');
}

/** The key as the bytes a device sends as its MQTT password. */
export const deviceKeyBytes = (factorySecret: string, mac: string): Buffer => Buffer.from(deriveDeviceKey(factorySecret, mac), 'utf8');

export function verifyDeviceKey(factorySecret: string, mac: string, presented: string | Buffer | undefined): boolean {
  if (presented === undefined) return false;
  const expected = deviceKeyBytes(factorySecret, mac);
  const given = Buffer.isBuffer(presented) ? presented : Buffer.from(presented, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
