// The narrow interfaces between the provisioning engine and the device gateway: the engine publishes
// commands through a CommandChannel; the gateway reports what devices say through a DeviceEventSink.
// Neither side sees the other's internals.

/** What a device receives on devices/{MAC}/commands (docs/device-protocol.md). */
export interface DeviceCommand {
  id: string;
  kind: string;
  params: Record<string, unknown>;
  /** The effective configuration, inline when the command stays within MAX_COMMAND_BYTES. */
  config?: string;
  /** SHA-256 (hex) of the effective configuration. */
  configHash?: string;
  /** Where to fetch the effective configuration when it is too large to travel inline. */
  configDocument?: DocumentReference;
  expiresAt: string;
}

/** A document a device fetches over HTTP with its own credentials, named by its SHA-256. */
export interface DocumentReference {
  url: string;
  sha256: string;
  size: number;
}

export interface CommandChannel {
  /** When the device's current session began (ms since epoch), once its hello was processed; else null. */
  connectedSince(mac: string): Promise<number | null>;
  publish(mac: string, command: DeviceCommand): Promise<void>;
}

/** What the engine needs of a hello (validated by the gateway). */
export interface HelloFacts {
  model?: string;
  firmware?: string;
  /** The hash of the configuration the device runs; absent means factory state. */
  configHash?: string;
}

export const commandStates = ['accepted', 'in-progress', 'succeeded', 'failed'] as const;
export type CommandState = (typeof commandStates)[number];

/** A device's answer to a command, validated and cleaned by the gateway. */
export interface CommandStatus {
  state: CommandState;
  progress?: number;
  /** A kind-specific stage (an upgrade's downloading, installing, rebooting). */
  stage?: string;
  error?: { code: string; message: string };
  configHash?: string;
  /** What the device reports of the command's outcome (a JSON object, read by the kind's result schema). */
  result?: Record<string, unknown>;
}

export interface DeviceEventSink {
  /** The device is connected and its hello was processed (or its grace period passed). */
  deviceReady(mac: string): Promise<void>;
  deviceHello(mac: string, hello: HelloFacts): Promise<void>;
  commandStatus(mac: string, jobId: string, status: CommandStatus): Promise<void>;
  /** Hellos that arrived together (a storm), in one call: what `deviceHello` does for each. */
  devicesHello?(batch: { mac: string; hello: HelloFacts }[]): Promise<void>;
  /** What `deviceReady` does for each of these devices, once `devicesHello` processed their hellos. */
  devicesReady?(macs: string[]): Promise<void>;
}
