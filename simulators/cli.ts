import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AppStationSimulator, type AppRegistration } from './app-station.js';
import { SimulatedDevice, type DoorOpening, type RemoteOpening, type SipRegistration } from './device-simulator.js';
import { Fleet, fleetMacs, modelsByType } from './fleet.js';
import type { ActiveCall, DtmfEvent, IncomingCall } from './sip/station.js';
import { deriveDeviceKey } from '../src/devices/device-key.js';
import { IxgGatewaySimulator, sampleIxgSite, uploadIxgSite, type IxgDoorRelease } from './ixg-gateway.js';

// npm run simulate -- --devices 100 --type 0 --mac-prefix 0C1105 --url mqtt://127.0.0.1:1883
// npm run simulate -- --devices 1 --type 0 --sip --call 101 …   (a door phone calling apartment 101)
// npm run simulate -- app --registration-url <url> --dtmf '#'    (a resident's app)
// npm run simulate -- ixg-upload --mac 0C1105000009 --http http://127.0.0.1:8080   (an IXG gateway's upload)
// npm run simulate -- ixg-gateway --mac 0C1105000009 --url mqtt://… --call 0010:101   (its calls to a unit's apps)
if (process.argv[2] === 'app') await appMain(process.argv.slice(3));
else if (process.argv[2] === 'ixg-upload') await ixgUploadMain(process.argv.slice(3));
else if (process.argv[2] === 'ixg-gateway') await ixgGatewayMain(process.argv.slice(3));
else await fleetMain();

/**
 * An IXGW-(T)GW gateway online: connects, registers over SIP, places an IXG station's call to a unit
 * (--call STATION:UNIT) and releases the station's door when the app that answered may (the cloud says).
 */
async function ixgGatewayMain(argv: string[]): Promise<void> {
  const { values: args } = parseArgs({
    args: argv,
    options: {
      mac: { type: 'string' },
      url: { type: 'string', default: process.env.SIMULATOR_URL ?? 'mqtt://127.0.0.1:1883' },
      http: { type: 'string', default: 'http://127.0.0.1:8080' },
      secret: { type: 'string', default: process.env.DEVICE_FACTORY_SECRET },
      'data-dir': { type: 'string', default: process.env.DATA_DIR ?? './data' },
      call: { type: 'string', description: 'STATION:UNIT, e.g. 0010:101' },
      building: { type: 'string' },
    },
  });
  const mac = args.mac?.toUpperCase().replace(/[^0-9A-F]/g, '');
  if (!mac || mac.length !== 12) throw new Error('give --mac: the IXG gateway (a device of type ixgw, placed in a site)');
  const [station, unit] = (args.call ?? '').split(':');
  if (args.call !== undefined && !(station && unit)) throw new Error('--call is STATION:UNIT, e.g. 0010:101');
  const secret = args.secret ?? readFileSync(join(args['data-dir'], 'device-factory-secret'), 'utf8').trim();
  const device = new SimulatedDevice({ mac, url: args.url, factorySecret: secret, ...modelsByType.ixgw!, reconnect: { minMs: 500, maxMs: 5000 }, sip: { enabled: true } });
  const gateway = new IxgGatewaySimulator(device, args.http);
  const say = (text: string) => console.log(`${mac}  ${text}`);
  let called = false;
  device.on('sip-registered', (r: SipRegistration) => {
    say(`SIP ${r.status === 200 ? 'registered' : `REGISTER refused (${r.status})`} as ${r.number} over ${r.transport} to ${r.server}:${r.port}`);
    if (r.status !== 200 || called || !station || !unit) return;
    called = true;
    say(`station ${station} calls unit ${unit}`);
    gateway.call(station, unit, { timeoutMs: 60_000, ...(args.building ? { building: args.building } : {}) }).then(
      (call) => say(`call up, answered by ${device.remoteParty(call.callId) ?? call.remote} (Call-ID ${call.callId})`),
      (error: Error) => say(`call to unit ${unit} failed: ${error.message}`),
    );
  });
  device.on('sip-dtmf', (tone: DtmfEvent) => say(`DTMF ${tone.digit} from ${tone.from}`));
  device.on('sip-ended', (end: { by: string }) => say(`call ended ${end.by === 'local' ? 'here' : 'by the other side'}`));
  gateway.on('door-released', (r: IxgDoorRelease) => say(`door of station ${r.station} RELEASED for app ${r.by}`));
  gateway.on('door-event-published', (r: IxgDoorRelease) => say(`door-opened event sent to the cloud (station ${r.station}, by ${r.by})`));
  gateway.on('door-release-refused', (r: { station: string; status: number; body: any }) => say(`door release of station ${r.station} refused by the cloud: ${r.status} ${r.body?.error?.message ?? ''}`));
  const shutdown = async () => {
    gateway.stop();
    await device.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
  device.start();
}

/** An IXGW-(T)GW gateway uploads a sample IXG system (buildings × units, a master station and an app each). */
async function ixgUploadMain(argv: string[]): Promise<void> {
  const { values: args } = parseArgs({
    args: argv,
    options: {
      mac: { type: 'string' },
      http: { type: 'string', default: 'http://127.0.0.1:8080' },
      secret: { type: 'string', default: process.env.DEVICE_FACTORY_SECRET },
      'data-dir': { type: 'string', default: process.env.DATA_DIR ?? './data' },
      buildings: { type: 'string', default: '2' },
      units: { type: 'string', default: '3' },
      name: { type: 'string', default: 'IXG Tower' },
    },
  });
  const mac = args.mac?.toUpperCase().replace(/[^0-9A-F]/g, '');
  if (!mac || mac.length !== 12) throw new Error('give --mac: the IXG gateway (a device of type ixgw, placed in a site)');
  const secret = args.secret ?? readFileSync(join(args['data-dir'], 'device-factory-secret'), 'utf8').trim();
  const doc = sampleIxgSite({ gatewayMac: mac, buildings: Number(args.buildings), units: Number(args.units), name: args.name });
  const res = await uploadIxgSite(args.http, mac, deriveDeviceKey(secret, mac), doc);
  console.log(JSON.stringify(res.body));
  if (res.status !== 200) process.exitCode = 1;
}

async function fleetMain(): Promise<void> {
  const { values: args } = parseArgs({
    options: {
      devices: { type: 'string', default: '10' },
      type: { type: 'string', default: '0' },
      'mac-prefix': { type: 'string', default: '0C1105' },
      'mac-offset': { type: 'string', default: '0' },
      url: { type: 'string', default: process.env.SIMULATOR_URL ?? 'mqtt://127.0.0.1:1883' },
      secret: { type: 'string', default: process.env.DEVICE_FACTORY_SECRET },
      'data-dir': { type: 'string', default: process.env.DATA_DIR ?? './data' },
      'local-addresses': { type: 'string' },
      ramp: { type: 'string', default: '0', description: 'devices started per 100 ms (0: all at once)' },
      keepalive: { type: 'string', default: '60' },
      duration: { type: 'string', default: '0', description: 'seconds to run (0: until Ctrl-C)' },
      'drop-download-at': { type: 'string', description: 'cut each firmware download once at this fraction (0-1); the device resumes with Range' },
      'stay-on-old-version': { type: 'boolean', default: false, description: 'come back on the old firmware after an upgrade' },
      quiet: { type: 'boolean', default: false, description: 'print only a line at start and a summary at stop' },
      sip: { type: 'boolean', default: false, description: 'register over SIP with the account the configuration carries; open relays on DTMF' },
      'auto-answer': { type: 'string', description: 'with --sip: answer incoming calls after ringing this many ms' },
      call: { type: 'string', description: 'with --sip: once registered, call this number once' },
      'hangup-after': { type: 'string', default: '0', description: 'with --sip: hang up this many seconds after a call is up' },
      dtmf: { type: 'string', description: 'with --sip: send these DTMF digits once a call is up' },
      'dtmf-after': { type: 'string', default: '1', description: 'seconds after the call is up' },
      help: { type: 'boolean', default: false },
    },
  });

  if (args.help) {
    console.log(`Simulated intercom fleet.
  --devices N          how many devices (default 10)
  --type CODE          0,1,2,3,50 or ixgw (default 0: ${modelsByType['0']!.model})
  --mac-prefix HEX     MAC prefix; devices get prefix + running number (default 0C1105)
  --mac-offset N       first running number (default 0)
  --url URL            mqtt://host:port or ws://host:port/mqtt
  --secret S           DEVICE_FACTORY_SECRET (default: env, else DATA_DIR/device-factory-secret)
  --local-addresses A  comma-separated source addresses (127.0.0.2,127.0.0.3)
  --ramp N             devices started per 100 ms (0: all at once)
  --duration S         stop after S seconds (0: until Ctrl-C)
  --drop-download-at F cut each firmware download once at fraction F (0-1); it resumes with Range
  --stay-on-old-version  come back on the old firmware after an upgrade (a failed flash)
  --quiet              print a line at start and a summary at stop, nothing in between
                       (for running it in the background beside a terminal you use)
  --sip                speak SIP: register with the account the configuration carries (server, port,
                       transport, credentials; again when they change), ring on incoming calls, open
                       a relay when its DTMF code arrives during a call and report it to the cloud
  --auto-answer MS     with --sip: answer incoming calls after ringing MS ms (indoor monitors)
  --call NUMBER        with --sip: once registered, call NUMBER once (e.g. 101, an apartment)
  --hangup-after S     with --sip: hang up S seconds after a call is up (default 0: the other side hangs up)
  --dtmf DIGITS        with --sip: send DIGITS (SIP INFO) once a call is up, e.g. # from a monitor to open the door
  --dtmf-after S       seconds after the call is up (default 1)

  npm run simulate -- app --help    a resident's app: redeem a registration code, take calls, send DTMF`);
    process.exit(0);
  }

  const count = Number(args.devices);
  if (!Number.isInteger(count) || count < 1) throw new Error('--devices must be a positive whole number');
  if (!modelsByType[args.type]) throw new Error(`--type must be one of ${Object.keys(modelsByType).join(', ')}`);
  let secret = args.secret;
  if (!secret) {
    try {
      secret = readFileSync(join(args['data-dir'], 'device-factory-secret'), 'utf8').trim();
    } catch {
      throw new Error('give --secret (DEVICE_FACTORY_SECRET) or --data-dir of the running service');
    }
  }

  const dropAt = args['drop-download-at'] !== undefined ? Number(args['drop-download-at']) : undefined;
  if (dropAt !== undefined && !(dropAt > 0 && dropAt < 1)) throw new Error('--drop-download-at must be between 0 and 1');
  const autoAnswer = args['auto-answer'] !== undefined ? Number(args['auto-answer']) : undefined;
  if (autoAnswer !== undefined && !(Number.isFinite(autoAnswer) && autoAnswer >= 0)) throw new Error('--auto-answer must be a number of milliseconds');
  if ((autoAnswer !== undefined || args.call !== undefined || args.dtmf !== undefined) && !args.sip) throw new Error('--auto-answer, --call and --dtmf need --sip');
  const hangupAfter = Number(args['hangup-after']);
  if (!(Number.isFinite(hangupAfter) && hangupAfter >= 0)) throw new Error('--hangup-after must be a number of seconds');
  const dtmfAfter = Number(args['dtmf-after']);
  if (!(Number.isFinite(dtmfAfter) && dtmfAfter >= 0)) throw new Error('--dtmf-after must be a number of seconds');
  const fleet = new Fleet({
    behaviour: { ...(dropAt !== undefined ? { dropDownloadAt: dropAt } : {}), ...(args['stay-on-old-version'] ? { stayOnOldVersion: true } : {}) },
    macs: fleetMacs(args['mac-prefix'], count, Number(args['mac-offset'])),
    type: args.type,
    url: args.url,
    factorySecret: secret,
    keepaliveSeconds: Number(args.keepalive),
    ...(args['local-addresses'] ? { localAddresses: args['local-addresses'].split(',') } : {}),
    ...(Number(args.ramp) > 0 ? { ramp: { perTick: Number(args.ramp), tickMs: 100 } } : {}),
    ...(args.sip ? { sip: { enabled: true, ...(autoAnswer !== undefined ? { autoAnswer: { ringMs: autoAnswer } } : {}) } } : {}),
  });

  const started = Date.now();
  const line = () => {
    const c = fleet.counts();
    return `${((Date.now() - started) / 1000).toFixed(1)}s  online ${c.online}/${count}  connecting ${c.connecting}  offline ${c.offline}  refused ${c.refused}`;
  };
  // On a terminal the status line is redrawn in place; otherwise (a log file, a pipe) a line every 10 s.
  const live = process.stdout.isTTY && !args.quiet;
  /** An event line; on a terminal it takes the status line's place, and the status line is redrawn later. */
  const say = (text: string) => {
    if (!args.quiet) process.stdout.write(`${live ? '\r\x1b[K' : ''}${text}\n`);
  };
  const ticker = args.quiet ? null : setInterval(() => process.stdout.write(live ? `\r${line()}   ` : `${line()}\n`), live ? 1000 : 10_000);
  console.log(`simulator: ${count} device(s) ${args['mac-prefix']}… connecting to ${args.url}${Number(args.duration) > 0 ? ` for ${args.duration} s` : ' until stopped (Ctrl-C or SIGTERM)'}`);

  /** Prints what a device does on SIP and places the --call once it is registered. */
  const watchSip = (device: SimulatedDevice) => {
    const mac = device.opts.mac;
    let called = false;
    device.on('sip-registered', (r: SipRegistration) => {
      say(`${mac}  SIP ${r.status === 200 ? 'registered' : `REGISTER refused (${r.status})`} as ${r.number} over ${r.transport} to ${r.server}:${r.port}`);
      if (r.status === 200 && args.call !== undefined && !called) {
        called = true;
        void placeCall(device, args.call);
      }
    });
    device.on('sip-unregistered', () => say(`${mac}  SIP unregistered`));
    device.on('sip-error', (error: Error) => say(`${mac}  SIP error: ${error.message}`));
    device.on('sip-incoming', (call: IncomingCall) => say(`${mac}  ringing: ${call.from} calls ${call.to}${autoAnswer !== undefined ? ` (answering in ${autoAnswer} ms)` : ''}`));
    device.on('sip-answered', (call: ActiveCall) => {
      const party = device.remoteParty(call.callId);
      say(`${mac}  call up with ${call.remote}${party && party !== call.remote ? `, answered by ${party}` : ''} (Call-ID ${call.callId})`);
      const digits = args.dtmf;
      if (digits) {
        setTimeout(() => {
          if (!device.activeCalls.has(call.callId)) return;
          say(`${mac}  sending DTMF ${digits}`);
          call.sendDtmf(digits).catch((e: Error) => say(`${mac}  DTMF failed: ${e.message}`));
        }, dtmfAfter * 1000);
      }
      if (hangupAfter > 0) setTimeout(() => void call.hangup().catch(() => {}), hangupAfter * 1000);
    });
    device.on('sip-dtmf', (tone: DtmfEvent) => say(`${mac}  DTMF ${tone.digit}`));
    device.on('sip-ended', (end: { callId: string; by: string }) => say(`${mac}  call ended ${end.by === 'local' ? 'here' : 'by the other side'}`));
    device.on('door-opened', (o: DoorOpening) => say(`${mac}  relay ${o.relay} (${o.name}) OPENED by DTMF from ${o.by}`));
    device.on('remote-open', (o: RemoteOpening) => say(`${mac}  relay ${o.relay} (${o.name}) OPENED from the cloud${o.by ? ` for app ${o.by}` : ''}`));
    device.on('door-event-published', (o: DoorOpening) => say(`${mac}  door-opened event sent to the cloud (relay ${o.relay}, by ${o.by})`));
  };
  const placeCall = async (device: SimulatedDevice, number: string) => {
    const mac = device.opts.mac;
    say(`${mac}  calling ${number}`);
    try {
      await device.call(number, { timeoutMs: 60_000 });
    } catch (error) {
      say(`${mac}  call to ${number} failed: ${(error as Error).message}`);
    }
  };
  if (args.sip) for (const device of fleet.devices) watchSip(device);

  const shutdown = async () => {
    if (ticker) clearInterval(ticker);
    process.stdout.write(`${live ? '\r' : ''}simulator stopping: ${line()}\n`);
    await fleet.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
  await fleet.start();
  if (Number(args.duration) > 0) setTimeout(() => void shutdown(), Number(args.duration) * 1000);
}

/** A resident's app: redeems a registration code, registers over WebSocket, answers calls and sends DTMF. */
async function appMain(argv: string[]): Promise<void> {
  const { values: args } = parseArgs({
    args: argv,
    options: {
      'registration-url': { type: 'string' },
      code: { type: 'string' },
      api: { type: 'string', default: 'http://127.0.0.1:8080' },
      account: { type: 'string' },
      name: { type: 'string' },
      transport: { type: 'string' },
      ca: { type: 'string' },
      'ring-ms': { type: 'string', default: '1000' },
      'no-answer': { type: 'boolean', default: false },
      dtmf: { type: 'string', default: '#' },
      'dtmf-after': { type: 'string', default: '1' },
      'hangup-after': { type: 'string', default: '3' },
      call: { type: 'string' },
      duration: { type: 'string', default: '0' },
      help: { type: 'boolean', default: false },
    },
  });
  if (args.help) {
    console.log(`Simulated resident app (app station).
  --registration-url URL  the registration URL (the text of the QR code) of POST /apartments/{id}/app-registrations
  --code CODE             or the code, with --api (default http://127.0.0.1:8080)
  --account FILE          keep the redeemed account in FILE (it holds the SIP password) and use it again next
                          time: a code is good for one registration only
  --name NAME             the station's name (default: the service's "App n")
  --transport ws|wss      which of the servers it was given (default: the first; wss needs --ca for a private CA)
  --ca FILE               CA certificate to trust for wss
  --ring-ms MS            ring this long before answering (default 1000)
  --no-answer             let calls ring (and show them) without answering
  --dtmf DIGITS           send these DTMF digits after answering (default '#', the usual door code; '' for none)
  --dtmf-after S          seconds after the answer (default 1)
  --hangup-after S        hang up S seconds after the answer (default 3; 0: the caller hangs up)
  --call NUMBER           once registered, call NUMBER (a SIP number of the address book)
  --duration S            stop after S seconds (0: until Ctrl-C)`);
    return;
  }
  const nonNegative = (name: 'dtmf-after' | 'hangup-after' | 'duration' | 'ring-ms') => {
    const v = Number(args[name]);
    if (!(Number.isFinite(v) && v >= 0)) throw new Error(`--${name} must be a non-negative number`);
    return v;
  };
  const [ringMs, dtmfAfter, hangupAfter, duration] = [nonNegative('ring-ms'), nonNegative('dtmf-after'), nonNegative('hangup-after'), nonNegative('duration')];
  if (args.transport !== undefined && args.transport !== 'ws' && args.transport !== 'wss') throw new Error('--transport must be ws or wss');
  const say = (text: string) => console.log(`app  ${text}`);

  let registration: AppRegistration | undefined;
  if (args.account) {
    try {
      registration = JSON.parse(readFileSync(args.account, 'utf8')) as AppRegistration;
      say(`using the account in ${args.account}`);
    } catch {
      /* none yet: redeem a code */
    }
  }
  if (!registration) {
    const source = args['registration-url'] ?? (args.code ? { code: args.code, baseUrl: args.api } : undefined);
    if (!source) throw new Error('give --registration-url (the QR code text) or --code (and --api)');
    registration = await AppStationSimulator.redeem(source, args.name ? { name: args.name } : {});
    if (args.account) writeFileSync(args.account, JSON.stringify(registration, null, 2), { mode: 0o600 });
  }
  const app = await AppStationSimulator.fromRegistration(registration, {
    ...(args.transport ? { transport: args.transport as 'ws' | 'wss' } : {}),
    ...(args.ca ? { ca: readFileSync(args.ca) } : {}),
  });
  say(`station ${app.station.name}: SIP ${app.sipNumber} registered over ${app.server.transport} to ${app.server.host}:${app.server.port}`);
  for (const entry of app.addressBook) say(`  address book: ${entry.sipNumber}  ${entry.type.padEnd(14)} ${entry.name}${entry.location ? ` (${entry.location})` : ''}${entry.doorRelease ? '  [door release]' : ''}`);

  app.on('incoming', (call: IncomingCall) => {
    say(`ringing: ${call.from} calls ${call.to}${args['no-answer'] ? '' : ` (answering in ${ringMs} ms)`}`);
    if (!args['no-answer']) setTimeout(() => void app.answer(call.callId).catch((e: Error) => say(`could not answer: ${e.message}`)), ringMs);
  });
  app.on('answered', (call: ActiveCall) => {
    say(`call up with ${call.remote} (Call-ID ${call.callId})`);
    const digits = args.dtmf;
    if (digits) {
      setTimeout(() => {
        if (app.currentCall?.callId !== call.callId) return;
        say(`sending DTMF ${digits}`);
        call.sendDtmf(digits).catch((e: Error) => say(`DTMF failed: ${e.message}`));
      }, dtmfAfter * 1000);
    }
    if (hangupAfter > 0) setTimeout(() => void call.hangup().catch(() => {}), hangupAfter * 1000);
  });
  app.on('dtmf', (tone: DtmfEvent) => say(`DTMF ${tone.digit} received`));
  app.on('ended', (end: { by: string }) => say(`call ended ${end.by === 'local' ? 'here' : 'by the other side'}`));
  app.on('unregistered', () => say('SIP unregistered'));

  const shutdown = async () => {
    say('stopping (unregistering)');
    await app.stop().catch(() => {});
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown());
  process.on('SIGTERM', () => void shutdown());
  if (duration > 0) setTimeout(() => void shutdown(), duration * 1000);
  if (args.call) {
    say(`calling ${args.call}`);
    await app.call(args.call, { timeoutMs: 60_000 }).catch((e: Error) => say(`call to ${args.call} failed: ${e.message}`));
  }
}
