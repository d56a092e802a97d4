import { randomUUID } from 'node:crypto';
import type { ReceivedCommand } from './device-types.js';

// The simulated device's remote door opening (docs/device-protocol.md, "open-door"): the relay opens at
// once and the device reports it as a door-opened event with method "remote" and the command's id.

/** A relay opened by an `open-door` command ('remote-open'). */
export interface RemoteOpening {
  eventId: string;
  /** The command's id: the cloud's open-door job. */
  jobId: string;
  relay: number;
  name: string;
  /** The app station that asked (its SIP number), as the command named it; null for an account. */
  by: string | null;
  at: string;
  /** Whether the event reached the broker (PUBACK). */
  published: boolean;
}

/** The relay `n` when the configuration enables it (RELAY.Enable{n} = 1), with its name. */
export function enabledRelay(config: ReadonlyMap<string, string>, n: number): { relay: number; name: string } | null {
  if (!Number.isInteger(n) || n < 1 || n > 8 || config.get(`Config.DoorSetting.RELAY.Enable${n}`) !== '1') return null;
  return { relay: n, name: config.get(`Config.DoorSetting.RELAY.Name${n}`) ?? `Relay ${n}` };
}

/** Opens the command's relay; answers the opening, or why not (the device's `failed` answer). */
export function openRemotely(config: ReadonlyMap<string, string>, command: ReceivedCommand): RemoteOpening | { code: string; message: string } {
  const p = (command.params ?? {}) as { relay?: unknown; requestedBy?: { by?: unknown } };
  const relay = enabledRelay(config, Number(p.relay));
  if (!relay) return { code: 'relay_unavailable', message: `relay ${String(p.relay).slice(0, 8)} is not enabled on this device` };
  const by = typeof p.requestedBy?.by === 'string' && /^[0-9]{1,32}$/.test(p.requestedBy.by) ? p.requestedBy.by : null;
  return { eventId: randomUUID(), jobId: command.id, relay: relay.relay, name: relay.name, by, at: new Date().toISOString(), published: false };
}

/** The door-opened event of a remote opening, as the device publishes it on devices/{MAC}/events. */
export const remoteOpeningEvent = (o: RemoteOpening) => ({ type: 'door-opened', eventId: o.eventId, relay: o.relay, method: 'remote', jobId: o.jobId, ...(o.by ? { by: o.by } : {}), at: o.at });
