// Topic rules of the device protocol (docs/device-protocol.md): a device lives under devices/{MAC}/.
const MAX_TOPIC_LENGTH = 256;
export const MAX_TOPIC_LEVELS = 8;

const deviceRoot = (mac: string) => `devices/${mac}/`;
export const helloTopic = (mac: string) => `devices/${mac}/hello`;
export const commandsTopic = (mac: string) => `devices/${mac}/commands`;
/** What happened at the device (a door opened): docs/device-protocol.md, "Events". */
export const eventsTopic = (mac: string) => `devices/${mac}/events`;

export type TopicVerdict = { ok: true } | { ok: false; reason: string };

export interface DevicePublish {
  topic: string;
  payloadBytes: number;
  qos: number;
  retain: boolean;
}

/** What follows devices/{MAC}/ in a topic a device may publish to: hello, events, commands/{id}/status. */
const isDeviceTopic = (rest: string) => rest === 'hello' || rest === 'events' || /^commands\/[^/]+\/status$/.test(rest);

/**
 * What a device may publish. Retained messages are refused: nothing here reads them, and each would be
 * held by the broker until replaced. QoS 2 is refused: the broker would hold every message until its
 * PUBREL, and the protocol needs no more than QoS 1.
 */
export function checkDevicePublish(mac: string, p: DevicePublish, maxPayloadBytes: number): TopicVerdict {
  const { topic } = p;
  if (topic.length > MAX_TOPIC_LENGTH) return { ok: false, reason: `topic longer than ${MAX_TOPIC_LENGTH} characters` };
  if (topic.split('/').length > MAX_TOPIC_LEVELS) return { ok: false, reason: `topic deeper than ${MAX_TOPIC_LEVELS} levels` };
  if (!topic.startsWith(deviceRoot(mac)) || topic.length === deviceRoot(mac).length) return { ok: false, reason: `publish outside ${deviceRoot(mac)}` };
  // Only the three topics a device speaks on; anything else (its own commands topic included) is a
  // firmware fault the vendor learns of at once, not a message silently swallowed.
  if (!isDeviceTopic(topic.slice(deviceRoot(mac).length))) return { ok: false, reason: `not a device topic (a device publishes to ${deviceRoot(mac)}hello, events and commands/{id}/status only)` };
  if (p.retain) return { ok: false, reason: 'retained messages are not accepted' };
  if (p.qos > 1) return { ok: false, reason: 'QoS 2 is not accepted (use QoS 0 or 1)' };
  if (p.payloadBytes > maxPayloadBytes) return { ok: false, reason: `payload of ${p.payloadBytes} bytes exceeds ${maxPayloadBytes}` };
  return { ok: true };
}

export function checkDeviceSubscribe(mac: string, topic: string): TopicVerdict {
  if (topic !== commandsTopic(mac)) return { ok: false, reason: `subscription to ${topic.slice(0, MAX_TOPIC_LENGTH)} (only ${commandsTopic(mac)} is allowed)` };
  return { ok: true };
}

const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** devices/{MAC}/commands/{jobId}/status → jobId, for the device's own MAC and a well-formed id only. */
export function commandStatusJobId(mac: string, topic: string): string | null {
  const prefix = `${commandsTopic(mac)}/`;
  if (!topic.startsWith(prefix) || !topic.endsWith('/status')) return null;
  const id = topic.slice(prefix.length, -'/status'.length);
  return JOB_ID.test(id) ? id : null;
}
