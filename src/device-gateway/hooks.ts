import type { Aedes, AedesPublishPacket, AuthenticateError, Client } from 'aedes';
import type { DeviceKeys } from '../devices/device-key.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/registry.js';
import { isCanonicalMac } from '../mac-library/mac.js';
import type { AuthFailureLimiter } from './auth-limiter.js';
import type { Sessions } from './sessions.js';
import { checkDevicePublish, checkDeviceSubscribe, commandStatusJobId, commandsTopic, eventsTopic, helloTopic } from './topics.js';

// CONNACK return codes of MQTT 3.1.1.
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
/** MQTT 3.1.1's protocol level; 3 is MQTT 3.1 ("MQIsdp"), 5 is MQTT 5. */
const MQTT_3_1_1 = 4;

export interface HookDeps {
  /** The MAC library: which MACs may connect at all. */
  macLibrary: ReadonlySet<string>;
  keys: DeviceKeys;
  limiter: AuthFailureLimiter;
  sessions: Sessions;
  addressOf: (client: Client) => string;
  accepting: () => boolean;
  maxPayloadBytes: number;
  metrics?: Metrics;
  /** A device's report on devices/{MAC}/events, already accepted by the broker. */
  deviceEvent?: (mac: string, payload: Buffer) => void;
  log: Logger;
}

/** The limiter's name for every user name that is not a MAC of the library. */
const UNKNOWN_NAMES = '*';

const authError = (returnCode: number, message: string): AuthenticateError => Object.assign(new Error(message), { returnCode }) as AuthenticateError;

/**
 * The broker's hooks: who may connect, publish and subscribe, what is forwarded, and what a device's
 * accepted publish means. Authorization hooks only decide; what a publish causes happens in
 * `published`, after the broker has accepted it.
 */
export function installHooks(broker: Aedes, deps: HookDeps): void {
  const { log } = deps;

  broker.preConnect = (client, packet, done) => {
    // Only MQTT 3.1.1 is spoken. Lowering the level to one aedes never accepts makes aedes itself answer
    // CONNACK 1 (unacceptable protocol version) and close, as the standard asks.
    if (packet.protocolVersion !== MQTT_3_1_1) {
      log.info({ ip: deps.addressOf(client), protocolVersion: packet.protocolVersion }, 'connection refused: only MQTT 3.1.1 is accepted');
      (packet as { protocolVersion: number }).protocolVersion = 0;
    }
    // A will would be published as if the device had sent it (a stale hello would read as a reset): the
    // protocol has none, and one a device sets is dropped.
    if (packet.will) (packet as { will?: unknown }).will = undefined;
    // Every session is clean: the cloud redelivers commands itself and drops what a persistent session
    // would replay (see `forward`), so the broker keeps nothing for a device between connections, on one
    // gateway process as on several. CONNACK's session-present flag is therefore always 0.
    (packet as { clean: boolean }).clean = true;
    done(null, true);
  };

  broker.authenticate = (client, username, password, callback) => {
    const ip = deps.addressOf(client);
    const done: typeof callback = (err, ok) => {
      deps.metrics?.connect(err ? ((err as AuthenticateError).returnCode ?? SERVER_UNAVAILABLE) : 0);
      callback(err, ok);
    };
    // Failures count per MAC of the library and address; every name that is no such MAC counts together
    // per address, so inventing names neither escapes the limit nor grows the limiter.
    const known = typeof username === 'string' && deps.macLibrary.has(username);
    const counted = known ? username : UNKNOWN_NAMES;
    const refuse = (code: number, reason: string) => {
      log.warn({ ip, clientId: client.id?.slice(0, 64), reason }, 'device refused');
      if (deps.limiter.recordFailure(ip, counted)) {
        log.warn({ ip, user: known ? username : '(names not in the MAC library)' }, 'too many failed authentications from this address; refused for the rest of the minute');
      }
      done(authError(code, reason), false);
    };
    if (deps.limiter.isBlocked(ip, counted)) return done(authError(NOT_AUTHORIZED, 'rate limited'), false);
    if (!deps.accepting()) return done(authError(SERVER_UNAVAILABLE, 'shutting down'), false);
    if (typeof username !== 'string' || !isCanonicalMac(username)) return refuse(BAD_USERNAME_OR_PASSWORD, 'user name is not a MAC of 12 uppercase hex digits');
    if (client.id !== username) return refuse(NOT_AUTHORIZED, 'client id differs from the user name');
    if (!deps.macLibrary.has(username)) return refuse(NOT_AUTHORIZED, 'MAC not in the MAC library');
    if (!deps.keys.verify(username, password)) return refuse(BAD_USERNAME_OR_PASSWORD, 'wrong device key');
    deps.sessions.begin(client).then(
      () => done(null, true),
      (err: unknown) => {
        log.warn({ mac: username, err: (err as Error).message }, 'device refused: the session registry did not answer');
        done(authError(SERVER_UNAVAILABLE, 'session registry unavailable'), false);
      },
    );
  };

  broker.authorizePublish = (client, packet, done) => {
    if (!client) return done(null); // the service's own publishes
    const verdict = checkDevicePublish(client.id, { topic: packet.topic, payloadBytes: packet.payload.length, qos: packet.qos, retain: packet.retain }, deps.maxPayloadBytes);
    if (!verdict.ok) {
      log.warn({ mac: client.id, topic: packet.topic.slice(0, 300), reason: verdict.reason }, 'publish refused; closing the session');
      return done(new Error(verdict.reason));
    }
    done(null);
  };

  broker.published = (packet, client, done) => {
    if (client) {
      deps.metrics?.gatewayMessagesReceived.inc();
      if (packet.topic === helloTopic(client.id)) deps.sessions.hello(client, packet.payload as Buffer);
      else if (packet.topic === eventsTopic(client.id)) deps.deviceEvent?.(client.id, packet.payload as Buffer);
      else {
        const jobId = commandStatusJobId(client.id, packet.topic);
        if (jobId) deps.sessions.status(client, jobId, packet.payload as Buffer);
      }
    }
    done(null);
  };

  broker.authorizeSubscribe = (client, sub, done) => {
    const verdict = checkDeviceSubscribe(client.id, sub.topic);
    if (!verdict.ok) {
      log.warn({ mac: client.id, reason: verdict.reason }, 'subscription refused');
      return done(null, null); // SUBACK 0x80 for this topic, the session stays
    }
    done(null, sub);
  };

  broker.authorizeForward = (client, packet) => forward(deps.sessions, client, packet);
}

/**
 * Commands are redelivered by the provisioning engine, which knows whether they still stand (a canceled
 * job, a reset device), so a command stamped before the current session began (one the broker would
 * replay as in flight, should a session ever carry over) is dropped: a device never gets one meant for
 * an earlier session.
 */
function forward(sessions: Sessions, client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
  if (packet.topic !== commandsTopic(client.id)) return packet;
  let sentAt = 0;
  try {
    sentAt = Number((JSON.parse((packet.payload as Buffer).toString('utf8')) as { sentAt?: unknown }).sentAt) || 0;
  } catch {
    return packet;
  }
  const since = sessions.startOf(client);
  return since !== undefined && sentAt < since ? null : packet;
}
