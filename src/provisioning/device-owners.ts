import type { Principal } from '../accounts/service.js';
import type { DeviceService } from '../devices/service.js';
import { notFound } from '../shared/errors.js';
import type { DomainEvents } from '../shared/events.js';

export interface DeviceOwnersOptions {
  /** An owner is read again after this long, whatever the events said (a lost bus message's bound). */
  ttlMs?: number;
  /** Devices kept at most; the oldest goes first. */
  maxEntries?: number;
  now?: () => number;
}

/**
 * Who owns a device, read once and kept: a job request then costs no device read. Only a device's
 * deletion changes its owner (a MAC bound again is a new device), so `device.removed` (and a MAC leaving
 * the library) drops it, from this process's events and, in a cluster, from the bus's. A property manager's
 * view depends on the directory's placements and is always read.
 */
export class DeviceOwners {
  private readonly owners = new Map<string, { installerId: string; at: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Bumped by every removal; a read from an older generation is not cached (it may predate the removal). */
  private generation = 0;

  constructor(
    private readonly devices: Pick<DeviceService, 'get' | 'firmwareOf'>,
    events: (DomainEvents | null | undefined)[],
    reconnects?: { onReconnect(listener: () => void): void } | null,
    opts: DeviceOwnersOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.maxEntries = opts.maxEntries ?? 100_000;
    this.now = opts.now ?? Date.now;
    for (const e of events) {
      e?.on('device.removed', ({ mac }) => this.forget(mac));
      e?.on('mac-library.removed', ({ mac }) => this.forget(mac));
    }
    reconnects?.onReconnect(() => this.clear());
  }

  /** The installer owning the caller's device; 404 `device` when it is not the caller's (as `DeviceService.get`). */
  async installerOf(principal: Principal, mac: string): Promise<string> {
    if (principal.role === 'property-manager') return (await this.devices.get(principal, mac)).installerId;
    const installerId = await this.ownerOf(mac);
    if (installerId === null || (principal.role !== 'distributor' && installerId !== principal.accountId)) throw notFound('device', { mac });
    return installerId;
  }

  private async ownerOf(mac: string): Promise<string | null> {
    const hit = this.owners.get(mac);
    if (hit && this.now() - hit.at < this.ttlMs) return hit.installerId;
    if (hit) this.owners.delete(mac);
    const generation = this.generation;
    const row = (await this.devices.firmwareOf([mac], null)).get(mac);
    if (!row) return null; // unknown devices are not kept: one bound a moment later must be found
    if (generation === this.generation) {
      if (this.owners.size >= this.maxEntries) this.owners.delete(this.owners.keys().next().value!);
      this.owners.set(mac, { installerId: row.installerId, at: this.now() });
    }
    return row.installerId;
  }

  private forget(mac: string): void {
    this.generation++;
    this.owners.delete(mac);
  }

  clear(): void {
    this.generation++;
    this.owners.clear();
  }
}
