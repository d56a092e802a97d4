import { createHash } from 'node:crypto';
import type { Relay } from '../devices/tables.js';
import { renderAutopLine } from './autop.js';
import type { AutopLine } from './tables.js';

/** The configuration hash a device in factory state reports (or it omits configHash). */
export const FACTORY_CONFIG_HASH = 'factory';

export interface ConfigSource {
  mac: string;
  name: string;
  location: string | null;
  networkGroup: number;
  relays: Relay[];
  sipNumber: string;
  sipPassword: string;
  connectType: 'udp' | 'tcp' | 'tls';
  /** The cloud's SIP server for the connect type (null: none configured, the keys are left out). */
  sipServer?: { host: string; port: number; domain: string } | null;
  regularAutop: AutopLine[];
  /** What the directory gives a placed device: its site's time zone and its documents (null: not placed). */
  directory: { timeZone: string; documents: { name: string; sha256: string; size: number; url: string }[] } | null;
}

const transport = { udp: 0, tcp: 1, tls: 2 } as const;
/**
 * A value as a device reads it back (docs/device-protocol.md, "Configuration lines"): everything after the
 * first `=`, trimmed of spaces and tabs, so none may begin or end with one. Records written before text was
 * checked at the boundary may hold control characters or such blanks; none reach a device.
 */
const oneLine = (v: string) => v.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').replace(/^ +| +$/g, '');

/**
 * The one renderer of a device's effective configuration: the device record, then its regular Autop
 * (a later line wins over an earlier one with the same key, as in the vendor's Autop files), with the
 * directory's part (time zone, contact and credential documents) between them. It is the
 * whole managed configuration: a device replaces its previous one with it, so a key that left it goes back
 * to the device's default. One-time Autop is not part of it (it is carried out once, by its own command).
 * The text is deterministic, so its SHA-256 is a stable hash; push (MQTT) and pull (HTTP) serve these bytes.
 * Lines are `Key = Value` or whole-line `#` comments, never an inline comment: a value is literal to the end
 * of its line (`DTMF1 = #`), and an empty value unsets the key (the device's default).
 */
export function renderConfig(src: ConfigSource): { text: string; hash: string } {
  const lines: string[] = [
    `# Effective configuration of ${src.mac}, rendered by the intercom device cloud`,
    'Config.Account1.GENERAL.Enable = 1',
    `Config.Account1.GENERAL.UserName = ${src.sipNumber}`,
    `Config.Account1.GENERAL.AuthName = ${src.sipNumber}`,
    `Config.Account1.GENERAL.Pwd = ${src.sipPassword}`,
    `Config.Account1.GENERAL.DisplayName = ${oneLine(src.name)}`,
    `Config.Account1.SIP.TransType = ${transport[src.connectType]}`,
    ...(src.sipServer
      ? [`Config.Account1.SIP.Server = ${src.sipServer.host}`, `Config.Account1.SIP.Port = ${src.sipServer.port}`, `Config.Account1.SIP.Domain = ${src.sipServer.domain}`]
      : []),
    `Config.Settings.NETWORK.Group = ${src.networkGroup}`,
    `Config.DoorSetting.DEVICENODE.Location = ${oneLine(src.location ?? '')}`,
  ];
  src.relays.forEach((r, i) => {
    const n = i + 1;
    lines.push(
      `Config.DoorSetting.RELAY.Name${n} = ${oneLine(r.name)}`,
      `Config.DoorSetting.RELAY.DTMF${n} = ${r.dtmf}`,
      `Config.DoorSetting.RELAY.Enable${n} = ${r.enabled ? 1 : 0}`,
      `Config.DoorSetting.RELAY.AccessMethods${n} = ${r.accessMethods.join(',')}`,
    );
  });
  if (src.directory) {
    // Before regular Autop, so an installer's Autop line can still override a key.
    lines.push('# Directory', `Config.Settings.DATETIME.TimeZone = ${src.directory.timeZone}`);
    for (const d of src.directory.documents) {
      const key = `Config.Directory.${d.name.toUpperCase()}`;
      lines.push(`${key}.Url = ${d.url}`, `${key}.Sha256 = ${d.sha256}`, `${key}.Size = ${d.size}`);
    }
  }
  if (src.regularAutop.length) lines.push('# Regular Autop', ...src.regularAutop.map(renderAutopLine));
  const text = `${lines.join('\n')}\n`;
  return { text, hash: createHash('sha256').update(text).digest('hex') };
}
