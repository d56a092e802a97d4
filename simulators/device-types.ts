import type { DeviceCommand } from '../src/provisioning/channel.js';
import type { DeviceSipOptions } from './device-sip.js';

// The simulated device's options and what it records, apart from its behaviour (device-simulator.ts).

export type DeviceState = 'idle' | 'connecting' | 'online' | 'offline' | 'refused' | 'stopped';

export interface SimulatedDeviceOptions {
  mac: string;
  /** Device key; derived from `factorySecret` when absent. `null` connects without credentials (reference brokers). */
  key?: string | null;
  factorySecret?: string;
  /** mqtt://host:port or ws://host:port/mqtt */
  url: string;
  /** Loopback source address to connect from (benchmarks spread fleets over 127.0.0.x). */
  localAddress?: string;
  model: string;
  firmware: string;
  keepaliveSeconds?: number;
  /** Jittered exponential backoff between reconnects; false disables reconnecting. */
  reconnect?: { minMs: number; maxMs: number } | false;
  /** Publish hello after connecting (reference brokers have no use for it). */
  hello?: boolean;
  configHash?: string;
  /** CA certificate to trust for mqtts:// and wss:// (devices pin the cloud's CA). */
  ca?: Buffer;
  /** Ways to misbehave, for tests. */
  behaviour?: DeviceBehaviour;
  /** Calls over SIP with the account its configuration carries (off by default). */
  sip?: DeviceSipOptions;
}

export interface DeviceBehaviour {
  /** Send no status while a job has had at most N deliveries (lost acks; a later delivery's answers go out). */
  dropAcks?: number;
  /** Wait this long before answering a command. */
  answerDelayMs?: number;
  /** How long applying a command takes, after `accepted` (a slow flash, a large configuration). */
  applyDelayMs?: number;
  /** Answer these kinds with failure. */
  failKinds?: string[];
  /** Drop the connection on receiving these kinds, without answering (offline mid-job). */
  offlineOnKinds?: string[];
  /** How long a reboot or reset keeps the device away. */
  rebootDelayMs?: number;
  /** Cut the firmware download's connection once, after this fraction of the image; the device resumes with Range. */
  dropDownloadAt?: number;
  /** After an upgrade's reboot, come back on the old firmware version (a failed flash). */
  stayOnOldVersion?: boolean;
  /** Report download progress every this many percent (default 25). */
  progressStepPercent?: number;
  /** Pause this long after each download progress report (a slow link). */
  downloadPauseMs?: number;
  /** Kinds beyond the protocol's that this firmware carries out at once, changing nothing (a plug-in kind under test). */
  plainKinds?: string[];
  /** Commands of these kinds are accepted and reported in progress, then held until `release(id)` (a slow job). */
  holdKinds?: string[];
}

/** One HTTP request of a firmware download, as the device made it. */
export interface DownloadRequest {
  jobId: string;
  status: number;
  range: string | null;
  bytes: number;
}

/** A command as the cloud sends it on devices/{MAC}/commands, stamped with its delivery time. */
export type ReceivedCommand = DeviceCommand & { sentAt: number };

/** A command's payload size as received, for tests of the 64 KiB limit. */
export interface ReceivedSize {
  id: string;
  bytes: number;
}
