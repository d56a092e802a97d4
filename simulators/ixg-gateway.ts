import type { IxgSiteDocument } from '../src/ixg/schemas.js';

// A simulated Aiphone IXGW-(T)GW gateway's upload side: the settings the IXG Support Tool gave it, sent to
// the cloud with the gateway's device credentials (docs/device-protocol.md, "IXG sites").

/** A site of `buildings` × `units` residential units (a master station each, apps with door release) and an entrance unit per building. */
export function sampleIxgSite(opts: { gatewayMac: string; buildings?: number; units?: number; appsPerUnit?: number; stationsPerUnit?: number; name?: string }): IxgSiteDocument {
  const buildings = opts.buildings ?? 2;
  const units = opts.units ?? 3;
  const apps = opts.appsPerUnit ?? 1;
  const perUnit = opts.stationsPerUnit ?? 1;
  let station = 10;
  let app = 100000;
  return {
    format: 1,
    site: { id: 'XXXX', name: opts.name ?? 'IXG Tower' },
    gateways: [{ number: '1', name: 'Gateway Adaptor1', ip: '192.0.2.10', mac: opts.gatewayMac }],
    buildings: Array.from({ length: buildings }, (_, b) => {
      const number = String(b + 1).padStart(2, '0');
      const door = String(station++).padStart(4, '0');
      return {
        number,
        name: `Building${b + 1}`,
        units: [
          { number: `9${number}`, name: `Entrance${b + 1}`, type: 'entrance' as const, stations: [{ number: door, name: `Entrance Station${b + 1}`, type: 'IXG-DM7', ip: `192.0.2.${20 + b}` }], apps: [] },
          ...Array.from({ length: units }, (_, u) => ({
            number: String(101 + u),
            name: `Residential${101 + u}`,
            type: 'residential' as const,
            stations: Array.from({ length: perUnit }, (_, k) => ({ number: String(station++).padStart(4, '0'), name: `${k ? 'Sub' : 'Master'} ${number}-${101 + u}${k ? `-${k}` : ''}`, type: k ? 'IXG-RS' : 'IXG-2C7', ip: null })),
            apps: Array.from({ length: apps }, (_, a) => ({ number: String(app++), name: `Intercom App${a + 1}`, addressBook: [{ station: door, doorRelease: true }] })),
          })),
        ],
      };
    }),
  };
}

/** Uploads the settings as the gateway does: `PUT /ixg/{MAC}/site` with its Basic credentials. */
export async function uploadIxgSite(httpUrl: string, mac: string, key: string, doc: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${httpUrl}/ixg/${mac}/site`, {
    method: 'PUT',
    headers: { authorization: `Basic ${Buffer.from(`${mac}:${key}`).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify(doc),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
