import { SimulatedDevice, type SimulatedDeviceOptions } from './device-simulator.js';

// Type codes of the vendor portal and a model of that kind with a firmware in the vendor's dotted form.
export const modelsByType: Record<string, { model: string; firmware: string }> = {
  '0': { model: 'R29', firmware: '29.30.10.112' },
  '1': { model: 'E18', firmware: '18.30.10.205' },
  '2': { model: 'C313', firmware: '113.30.10.62' },
  '3': { model: 'R49G', firmware: '149.30.10.12' },
  '50': { model: 'A05', firmware: '105.30.10.20' },
  ixgw: { model: 'IXGW-TGW', firmware: '2.01' },
};

/** `count` MACs: the hex prefix followed by a running number (0C1105 + 000001 …). */
export function fleetMacs(prefix: string, count: number, offset = 0): string[] {
  const p = prefix.replace(/[:-]/g, '').toUpperCase();
  if (!/^[0-9A-F]{0,11}$/.test(p)) throw new Error(`MAC prefix ${prefix} must be 0 to 11 hex digits`);
  const width = 12 - p.length;
  if (offset + count > 16 ** width) throw new Error(`prefix ${prefix} leaves room for only ${16 ** width} MACs`);
  return Array.from({ length: count }, (_, i) => p + (offset + i).toString(16).toUpperCase().padStart(width, '0'));
}

export interface FleetOptions extends Omit<SimulatedDeviceOptions, 'mac' | 'model' | 'firmware' | 'localAddress'> {
  macs: string[];
  type?: string;
  /** Source addresses used round-robin. */
  localAddresses?: string[];
  /** The configuration hash each device holds (a reboot: its hello says so, and no provisioning follows). */
  configHashes?: Record<string, string>;
  /** Devices started per tick of `rampMs` (0 = all at once, as after a power cut). */
  ramp?: { perTick: number; tickMs: number };
}

export class Fleet {
  readonly devices: SimulatedDevice[];

  constructor(opts: FleetOptions) {
    const kind = modelsByType[opts.type ?? '0'] ?? modelsByType['0']!;
    const { macs, localAddresses, ramp: _ramp, type: _type, configHashes, ...deviceOptions } = opts;
    this.devices = macs.map(
      (mac, i) =>
        new SimulatedDevice({
          ...deviceOptions,
          mac,
          model: kind.model,
          firmware: kind.firmware,
          ...(configHashes?.[mac] ? { configHash: configHashes[mac] } : {}),
          ...(localAddresses?.length ? { localAddress: localAddresses[i % localAddresses.length] } : {}),
        }),
    );
    this.ramp = opts.ramp;
  }

  private readonly ramp: FleetOptions['ramp'];

  async start(): Promise<void> {
    if (!this.ramp || this.ramp.perTick <= 0) {
      for (const d of this.devices) d.start();
      return;
    }
    for (let i = 0; i < this.devices.length; i += this.ramp.perTick) {
      for (const d of this.devices.slice(i, i + this.ramp.perTick)) d.start();
      await new Promise((r) => setTimeout(r, this.ramp!.tickMs));
    }
  }

  counts(): Record<'online' | 'connecting' | 'offline' | 'refused' | 'idle' | 'stopped', number> {
    const c = { online: 0, connecting: 0, offline: 0, refused: 0, idle: 0, stopped: 0 };
    for (const d of this.devices) c[d.state]++;
    return c;
  }

  async waitFor(predicate: (c: ReturnType<Fleet['counts']>) => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (predicate(this.counts())) return true;
      await new Promise((r) => setTimeout(r, 25));
    }
    return predicate(this.counts());
  }

  async stop(graceful = true): Promise<void> {
    await Promise.all(this.devices.map((d) => d.stop(graceful)));
  }
}
