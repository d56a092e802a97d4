import { createHmac, timingSafeEqual } from 'node:crypto';

/** The device key flashed at the factory: lowercase hex of HMAC-SHA256(factory secret, MAC). */
export function deriveDeviceKey(factorySecret: string, mac: string): string {
  return createHmac('sha256', factorySecret).update(mac).digest('hex');
}

/**
 * The one check of a device key, used by the MQTT gateway and the device-facing HTTP routes alike.
 * A MAC's expected key is kept once it has been presented correctly, so a fleet reconnecting costs no
 * HMAC per connect; wrong guesses are never cached, so they cannot grow the cache.
 */
export class DeviceKeys {
  /** Kept as text: a string costs a held device less than a Buffer (an object and its backing store). */
  private readonly known = new Map<string, string>();

  constructor(private readonly factorySecret: string) {}

  verify(mac: string, presented: string | Buffer | undefined | null): boolean {
    if (presented === undefined || presented === null) return false;
    const given = Buffer.isBuffer(presented) ? presented : Buffer.from(presented, 'utf8');
    const key = this.known.get(mac) ?? deriveDeviceKey(this.factorySecret, mac);
    const expected = Buffer.from(key, 'utf8');
    const ok = given.length === expected.length && timingSafeEqual(given, expected);
    if (ok) this.known.set(mac, key);
    return ok;
  }

  /** Forgets a MAC's key (the MAC left the MAC library). */
  forget(mac: string): void {
    this.known.delete(mac);
  }
}
