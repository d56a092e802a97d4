import type { Principal } from '../accounts/service.js';
import { recordWrites } from '../audit/service.js';
import type { Queryable } from '../db/client.js';
import { codeToType, type DeviceTypeCode } from './schemas.js';
import { newSipPassword, nextSipNumber } from './sip-account.js';
import { devices } from './tables.js';

export interface NewDevice {
  mac: string;
  installerId: string;
  name: string;
  type: DeviceTypeCode;
}

/**
 * Binds MACs to new devices inside the caller's transaction, with the defaults POST /devices gives (network
 * group 1, no relays, no monitoring) and a SIP account each; one audit row per device. The caller has
 * checked and locked each MAC's library entry (`lockLibraryEntries`) and that no device holds it.
 */
export async function bindDevices(q: Queryable, principal: Principal, list: NewDevice[], audit: { siteId: string | null; via: string }): Promise<void> {
  for (let i = 0; i < list.length; i += 1000) {
    const chunk = list.slice(i, i + 1000);
    await q.insert(devices).values(chunk.map((d) => ({ mac: d.mac, installerId: d.installerId, name: d.name, type: d.type, sipNumber: nextSipNumber(), sipPassword: newSipPassword() })));
  }
  await recordWrites(
    q,
    principal,
    list.map((d) => ({ installerId: d.installerId, siteId: audit.siteId, action: 'device.created', subject: d.mac, details: { name: d.name, type: codeToType(d.type), via: audit.via } })),
  );
}
