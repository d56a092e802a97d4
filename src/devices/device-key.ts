import { createHmac, timingSafeEqual } from 'node:crypto';

/** The device key flashed at the factory: lowercase hex of HMAC-SHA256(factory secret, MAC). */
export function deriveDeviceKey(factorySecret: string, mac: string): string {
  return createHmac('sha256', factorySecret).update(mac).digest('hex');
}

export function verifyDeviceKey(factorySecret: string, mac: string, presented: string | Buffer | undefined): boolean {
  if (presented === undefined) return false;
  const expected = Buffer.from(deriveDeviceKey(factorySecret, mac), 'utf8');
  const given = Buffer.isBuffer(presented) ? presented : Buffer.from(presented, 'utf8');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
