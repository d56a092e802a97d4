// Topic rules of the device protocol (docs/device-protocol.md): a device lives under devices/{MAC}/.
export const MAX_TOPIC_LENGTH = 256;
export const MAX_TOPIC_LEVELS = 8;

export const deviceRoot = (mac: string) => `devices/${mac}/`;
export const helloTopic = (mac: string) => `devices/${mac}/hello`;
export const commandsTopic = (mac: string) => `devices/${mac}/commands`;

export type TopicVerdict = { ok: true } | { ok: false; reason: string };

export function checkDevicePublish(mac: string, topic: string, payloadBytes: number, maxPayloadBytes: number): TopicVerdict {
  if (topic.length > MAX_TOPIC_LENGTH) return { ok: false, reason: `topic longer than ${MAX_TOPIC_LENGTH} characters` };
  if (topic.split('/').length > MAX_TOPIC_LEVELS) return { ok: false, reason: `topic deeper than ${MAX_TOPIC_LEVELS} levels` };
  if (!topic.startsWith(deviceRoot(mac)) || topic.length === deviceRoot(mac).length) return { ok: false, reason: `publish outside ${deviceRoot(mac)}` };
  if (topic === commandsTopic(mac)) return { ok: false, reason: 'devices do not publish commands' };
  if (payloadBytes > maxPayloadBytes) return { ok: false, reason: `payload of ${payloadBytes} bytes exceeds ${maxPayloadBytes}` };
  return { ok: true };
}

export function checkDeviceSubscribe(mac: string, topic: string): TopicVerdict {
  if (topic !== commandsTopic(mac)) return { ok: false, reason: `subscription to ${topic.slice(0, MAX_TOPIC_LENGTH)} (only ${commandsTopic(mac)} is allowed)` };
  return { ok: true };
}

/** devices/{MAC}/commands/{jobId}/status → jobId, for the device's own MAC only. */
export function commandStatusJobId(mac: string, topic: string): string | null {
  const prefix = `${commandsTopic(mac)}/`;
  if (!topic.startsWith(prefix) || !topic.endsWith('/status')) return null;
  const id = topic.slice(prefix.length, -'/status'.length);
  return id && !id.includes('/') ? id : null;
}
