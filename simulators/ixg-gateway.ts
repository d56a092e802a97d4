import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IxgSiteDocument } from '../src/ixg/schemas.js';
import type { ActiveCall, DtmfEvent } from './sip/station.js';

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

/** A door the gateway released for an app, after the cloud said the app may ('door-released'). */
export interface IxgDoorRelease {
  eventId: string;
  callId: string;
  station: string;
  /** The app that released it (its SIP number), as the cloud named it. */
  by: string;
  at: string;
}

/** The gateway's side of a device: what IxgGatewaySimulator needs of a SimulatedDevice (type ixgw, SIP on). */
export interface IxgGatewayDevice {
  readonly opts: { mac: string };
  readonly key: string | null;
  call(number: string, opts?: { timeoutMs?: number; headers?: string[] }): Promise<ActiveCall>;
  publish(subtopic: string, payload: string): Promise<void>;
  on(event: 'sip-dtmf', listener: (tone: DtmfEvent) => void): unknown;
  off(event: 'sip-dtmf', listener: (tone: DtmfEvent) => void): unknown;
}

/** The tone an app sends in a call to release the calling IXG station's door (docs/device-protocol.md, "IXG calls"). */
export const IXG_DOOR_RELEASE_TONE = '#';

/**
 * A simulated IXGW-(T)GW gateway's call side: places an IXG station's call to a unit's apps through the
 * cloud (X-IXG-Station, X-IXG-Building), and when the app answering sends the door-release tone, asks the
 * cloud whether that app may release the station's door, "releases" it, and reports `door-opened`.
 *
 * Events: 'door-released' (IxgDoorRelease), 'door-event-published' (IxgDoorRelease), 'door-release-refused'
 * ({ callId, station, status, body }), 'report-failed' (Error).
 */
export class IxgGatewaySimulator extends EventEmitter {
  /** Doors released, in order. */
  readonly releases: IxgDoorRelease[] = [];
  /** Calls placed, by Call-ID: the station each is for. */
  private readonly placed = new Map<string, string>();
  private readonly onDtmf = (tone: DtmfEvent) => void this.dtmf(tone);

  constructor(
    readonly device: IxgGatewayDevice,
    /** The service's HTTP address (the door-release question goes there). */
    readonly httpUrl: string,
  ) {
    super();
    device.on('sip-dtmf', this.onDtmf);
  }

  /** Places station `station`'s call to unit `unit` (in `building`, when named) and resolves once it is answered. */
  async call(station: string, unit: string, opts: { building?: string; timeoutMs?: number } = {}): Promise<ActiveCall> {
    const headers = [`X-IXG-Station: ${station}`, ...(opts.building ? [`X-IXG-Building: ${opts.building}`] : [])];
    const call = await this.device.call(unit, { headers, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) });
    this.placed.set(call.callId, station);
    return call;
  }

  /** Asks the cloud about a release (POST /ixg/{MAC}/door-release) and answers its status and body. */
  async askRelease(callId: string, station: string): Promise<{ status: number; body: any }> {
    const mac = this.device.opts.mac;
    const res = await fetch(`${this.httpUrl}/ixg/${mac}/door-release`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${mac}:${this.device.key ?? ''}`).toString('base64')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ callId, station }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  stop(): void {
    this.device.off('sip-dtmf', this.onDtmf);
  }

  private async dtmf(tone: DtmfEvent): Promise<void> {
    const station = this.placed.get(tone.callId);
    if (!station || tone.digit !== IXG_DOOR_RELEASE_TONE) return;
    try {
      const answer = await this.askRelease(tone.callId, station);
      if (answer.status !== 200) return void this.emit('door-release-refused', { callId: tone.callId, station, status: answer.status, body: answer.body });
      const release: IxgDoorRelease = { eventId: randomUUID(), callId: tone.callId, station, by: answer.body.by, at: new Date().toISOString() };
      this.releases.push(release);
      this.emit('door-released', release);
      const event = { type: 'door-opened', eventId: release.eventId, relay: 1, method: 'dtmf', by: release.by, callId: release.callId, at: release.at, station };
      await this.device.publish('events', JSON.stringify(event));
      this.emit('door-event-published', release);
    } catch (error) {
      this.emit('report-failed', error);
    }
  }
}
