import type { Database, Statement } from '../db/client.js';
import { GroupCommit } from '../db/group-commit.js';
import type { DeviceRow, DeviceService } from '../devices/service.js';
import type { DirectoryPart, DirectoryRenders } from '../directory/follower.js';
import type { DocumentStore } from '../documents/service.js';
import type { DeviceCommand, DocumentReference } from './channel.js';
import { renderConfig } from './config-renderer.js';
import type { AutopLine } from './tables.js';
import type { SipEndpoint } from '../calls/kamailio.js';

/** The SIP server address for a connect type: the transport's port (TLS falls back to none when off). */
export function sipServerFor(endpoint: SipEndpoint | null, connectType: 'udp' | 'tcp' | 'tls'): { host: string; port: number; domain: string } | null {
  if (!endpoint) return null;
  const port = endpoint.ports[connectType];
  return port ? { host: endpoint.host, port, domain: endpoint.domain } : null;
}

/** The largest command a device must accept on devices/{MAC}/commands (docs/device-protocol.md). */
export const MAX_COMMAND_BYTES = 64 * 1024;
/** Room kept for what the gateway adds to every command (`sentAt`). */
const STAMP_ROOM = 64;

const regularAutopOfMany: Statement = { name: 'configuration_regular_autop_many', text: 'SELECT mac, lines FROM regular_autop WHERE mac = ANY($1::text[])' };

/**
 * A device's effective configuration (its record, what the directory rendered for it, its regular Autop) and how it travels: inline in a
 * command while the command stays within 64 KiB, otherwise as a document the device fetches by hash.
 * Push and pull serve the same bytes: both come from `effective`.
 */
export class Configurations {
  // Commands sent together (a storm, a batch) render their configurations from one pair of reads.
  private readonly grouped = new GroupCommit<DeviceRow, { text: string; hash: string }>(
    async (records) => {
      const out = await this.effectiveOfMany(records);
      return records.map((d) => out.get(d.mac)!);
    },
    { key: (d) => d.mac },
  );

  constructor(
    private readonly database: Database,
    private readonly devices: DeviceService,
    private readonly documents: DocumentStore,
    private readonly directory: DirectoryRenders,
    /** The URL a device fetches a document at. */
    private readonly documentUrl: (sha256: string) => string,
    /** Where devices register for calls (null: no SIP server); a getter, as Kamailio starts after the engine. */
    private readonly sipEndpoint: () => SipEndpoint | null = () => null,
  ) {}

  async effective(mac: string): Promise<{ text: string; hash: string } | null> {
    const device = await this.devices.getRecord(mac);
    return device ? this.effectiveOf(device) : null;
  }

  /** The effective configuration of a device whose record the caller has already read. */
  async effectiveOf(device: DeviceRow): Promise<{ text: string; hash: string }> {
    return this.grouped.submit(device);
  }

  /** The effective configurations of many devices whose records the caller has read: two reads for all (a batch of hellos). */
  async effectiveOfMany(records: DeviceRow[]): Promise<Map<string, { text: string; hash: string }>> {
    const macs = records.map((d) => d.mac);
    if (!macs.length) return new Map();
    const [regular, placed] = await Promise.all([this.database.run<{ mac: string; lines: AutopLine[] }>(regularAutopOfMany, [macs]), this.directory.ofMany(macs)]);
    const lines = new Map(regular.map((r) => [r.mac, r.lines]));
    return new Map(records.map((d) => [d.mac, this.render(d, lines.get(d.mac) ?? [], placed.get(d.mac) ?? null)]));
  }

  private render(device: DeviceRow, regularAutop: AutopLine[], placed: DirectoryPart | null): { text: string; hash: string } {
    const mac = device.mac;
    return renderConfig({
      mac,
      name: device.name,
      location: device.location,
      networkGroup: device.networkGroup,
      relays: device.relays,
      sipNumber: device.sipNumber,
      sipPassword: device.sipPassword,
      connectType: device.connectType,
      sipServer: sipServerFor(this.sipEndpoint(), device.connectType),
      regularAutop,
      directory: placed && { timeZone: placed.timeZone, documents: placed.documents.map((d) => ({ ...d, url: this.documentUrl(d.sha256) })) },
    });
  }

  /** Stores bytes as a document for the device and answers how a command names it. */
  async asDocument(mac: string, name: string, mediaType: string, body: Buffer): Promise<DocumentReference> {
    const { sha256, size } = await this.documents.put(mac, name, mediaType, body);
    return { url: this.documentUrl(sha256), sha256, size };
  }

  /**
   * The command's configuration fields: the text inline, or, when the command would exceed
   * MAX_COMMAND_BYTES with it, a reference to the same text as a document.
   */
  async forCommand(device: DeviceRow, rest: Omit<DeviceCommand, 'config' | 'configHash' | 'configDocument'>): Promise<Pick<DeviceCommand, 'config' | 'configHash' | 'configDocument'>> {
    const mac = device.mac;
    const config = await this.effectiveOf(device);
    const inline = { config: config.text, configHash: config.hash };
    if (commandBytes({ ...rest, ...inline }) <= MAX_COMMAND_BYTES) return inline;
    const configDocument = await this.asDocument(mac, 'config', 'text/plain; charset=utf-8', Buffer.from(config.text, 'utf8'));
    return { configHash: config.hash, configDocument };
  }
}

/** The size of a command on the wire, with room for the delivery stamp. */
export const commandBytes = (command: object) => Buffer.byteLength(JSON.stringify(command)) + STAMP_ROOM;
