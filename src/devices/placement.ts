import type { SQL } from 'drizzle-orm';
import type { AnyPgColumn } from 'drizzle-orm/pg-core';
import type { Principal } from '../accounts/service.js';
import type { Tx } from '../db/client.js';

/** Where a device is installed, as the directory records it. */
export interface DevicePlacementView {
  siteId: string;
  buildingId: string | null;
  apartmentId: string | null;
}

export interface PlacementFilter {
  siteId?: string;
  /** Placed in any of these sites (none: no device). */
  siteIds?: string[];
  buildingId?: string;
  apartmentId?: string;
}

/**
 * What the devices domain asks of the directory, which records placements (the directory implements it;
 * the devices domain never reads its tables). Writes run in the device update's own transaction.
 */
export interface DevicePlacements {
  /** Places the device (null: takes it out), checking the target belongs to the device's installer. */
  place(tx: Tx, principal: Principal, device: { mac: string; type: string; installerId: string }, target: DevicePlacementView | null): Promise<void>;
  /** The device's own facts changed (name, type, location): what the directory rendered from them must follow. */
  deviceChanged(tx: Tx, device: { mac: string; type: string }): Promise<void>;
  /** The device is being deleted: its entry must leave the other devices' lists. */
  deviceRemoved(tx: Tx, mac: string): Promise<void>;
  /** Placements of these devices. */
  of(macs: string[]): Promise<Map<string, DevicePlacementView>>;
  /** A condition on `devices.mac` keeping devices placed as the filter says. */
  filter(mac: AnyPgColumn, filter: PlacementFilter): SQL;
  /** Called once the device update committed (the directory renders what it marked). */
  committed(): void;
}
