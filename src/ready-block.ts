import { resolve } from 'node:path';
import type { Config } from './config.js';
import { reachableHost } from './infra/net.js';
import type { RunningProcess } from './service.js';

/** The block a person starting the service reads: where it listens, the first token, how to try it. */
export function readyBlock(service: Pick<RunningProcess, 'publicUrl' | 'generatedAdminToken'> & { sip?: RunningProcess['sip'] } & { ports: { mqtt: number | null; mqtts: number | null; http: number | null; ws: number | null } }, c: Config): string {
  const host = reachableHost(c.mqtt.host);
  const api = service.publicUrl;
  const token = service.generatedAdminToken
    ? `${service.generatedAdminToken}   (the distributor's token, shown only now: keep it)`
    : c.adminToken
      ? '(ADMIN_TOKEN)'
      : '(printed on the first start; issue more with POST /api/v1/installers/{id}/tokens)';
  const secretArg = c.deviceFactorySecret ? '--secret "$DEVICE_FACTORY_SECRET"' : `--data-dir ${resolve(c.dataDir)}`;
  const mqtt = service.ports.mqtt;
  // A machine running some roles only shows what it serves.
  return [
    '',
    'Intercom device cloud is ready',
    ...(service.ports.http ? [`  API           ${api}/api/v1        OpenAPI: ${api}/docs`, `  health        ${api}/healthz   ${api}/readyz`] : []),
    ...(mqtt
      ? [`  MQTT          mqtt://${host}:${mqtt}${service.ports.mqtts ? `   mqtts://${host}:${service.ports.mqtts}` : ''}   ws://${host}:${service.ports.ws}/mqtt`]
      : []),
    ...(service.sip
      ? [
          `  SIP           sip:${service.sip.host}:${service.sip.ports.udp} (udp, tcp ${service.sip.ports.tcp}${service.sip.ports.tls ? `, tls ${service.sip.ports.tls}` : ''})   ws://${service.sip.host}:${service.sip.ports.ws}/${service.sip.ports.wss ? `   wss :${service.sip.ports.wss}` : ''}   domain ${service.sip.domain}`,
        ]
      : []),
    `  token         ${token}`,
    ...(mqtt
      ? [
          '  simulator     (after adding the MACs 0C1105000000 and 0C1105000001 to a MAC library)',
          `                npm run simulate -- --devices 2 --mac-prefix 0C1105 --url mqtt://${host}:${mqtt} ${secretArg} --quiet`,
        ]
      : []),
    '',
  ].join('\n');
}
