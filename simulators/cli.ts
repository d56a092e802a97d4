import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Fleet, fleetMacs, modelsByType } from './fleet.js';

// npm run simulate -- --devices 100 --type 0 --mac-prefix 0C1105 --url mqtt://127.0.0.1:1883
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
                       (for running it in the background beside a terminal you use)`);
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
const fleet = new Fleet({
  behaviour: { ...(dropAt !== undefined ? { dropDownloadAt: dropAt } : {}), ...(args['stay-on-old-version'] ? { stayOnOldVersion: true } : {}) },
  macs: fleetMacs(args['mac-prefix'], count, Number(args['mac-offset'])),
  type: args.type,
  url: args.url,
  factorySecret: secret,
  keepaliveSeconds: Number(args.keepalive),
  ...(args['local-addresses'] ? { localAddresses: args['local-addresses'].split(',') } : {}),
  ...(Number(args.ramp) > 0 ? { ramp: { perTick: Number(args.ramp), tickMs: 100 } } : {}),
});

const started = Date.now();
const line = () => {
  const c = fleet.counts();
  return `${((Date.now() - started) / 1000).toFixed(1)}s  online ${c.online}/${count}  connecting ${c.connecting}  offline ${c.offline}  refused ${c.refused}`;
};
// On a terminal the status line is redrawn in place; otherwise (a log file, a pipe) a line every 10 s.
const live = process.stdout.isTTY && !args.quiet;
const ticker = args.quiet ? null : setInterval(() => process.stdout.write(live ? `\r${line()}   ` : `${line()}\n`), live ? 1000 : 10_000);
console.log(`simulator: ${count} device(s) ${args['mac-prefix']}… connecting to ${args.url}${Number(args.duration) > 0 ? ` for ${args.duration} s` : ' until stopped (Ctrl-C or SIGTERM)'}`);
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
