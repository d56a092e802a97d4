import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnTied } from '../../src/infra/tied-child.js';
import { freeUdpPort } from '../../src/infra/net.js';

// SIPp (Debian's sip-tester) as an independent SIP client for bench/sip.ts and test/calls/sipp.test.ts.
// Every run is bounded: -m calls, -timeout for the whole run, a receive timeout per message.

export const SCENARIOS = resolve(import.meta.dirname, '../sipp');

const SIPP_PATHS = ['/usr/bin/sipp', '/usr/local/bin/sipp'];

/** The sipp binary, when installed. */
export function findSipp(): string | null {
  return (
    SIPP_PATHS.find((p) => {
      try {
        accessSync(p, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    }) ?? null
  );
}

/**
 * The digest keyword for one line of an injection file: SIPp expands keywords inside injected fields, not
 * fields inside a keyword's parameters, so the account's line carries the whole keyword.
 */
export const authField = (username: string, password: string) => {
  if (!/^[A-Za-z0-9._~!$&'()*+,=:-]+$/.test(username + password)) throw new Error('an account SIPp cannot quote in its injection file');
  return `[authentication username=${username} password=${password}]`;
};

/** An injection file (-inf): SEQUENTIAL, one line per call, fields separated by ";". */
export function writeInjection(file: string, rows: string[][]): string {
  writeFileSync(file, ['SEQUENTIAL', ...rows.map((r) => r.join(';'))].join('\n') + '\n');
  return file;
}

export interface SippOptions {
  /** Scenario file name in bench/sipp (or an absolute path). */
  scenario: string;
  /** Kamailio's address, host:port (omitted for a UAS that only answers). */
  target?: string;
  localIp: string;
  localPort: number;
  /** Working directory: trace files land here. */
  dir: string;
  /** Name of this run's files in `dir`. */
  name: string;
  injection?: string;
  /** Calls (-m): the run ends after this many. */
  calls: number;
  /** Calls per second (-r, -rp 1000); omitted for a UAS. */
  rate?: number;
  /** Most calls at once (-l). */
  limit?: number;
  /** The whole run's bound (-timeout, with -timeout_error), in seconds. */
  timeoutSeconds: number;
  /** Each expected message's bound (-recv_timeout), in ms. */
  recvTimeoutMs?: number;
  /** Per-call response times into {name}_rtt.csv (-trace_rtt, every call). */
  rtt?: boolean;
  /** Statistics every second into {name}_stats.csv (-trace_stat). */
  stats?: boolean;
  /** A call aborted mid-way is ended with a BYE (SIPp's default); off for registrations. */
  byeOnAbort?: boolean;
  extra?: string[];
}

export interface SippResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The command line, for the record. */
  command: string;
  /** The last statistics line, by column name (-trace_stat). */
  stats: Record<string, string> | null;
  /** Response times of every call: rtd name and milliseconds. */
  rtt: { rtd: string; ms: number }[];
  /** SIPp's log of unexpected messages (-trace_err), the start of it. */
  errors: string;
  /** The end of SIPp's screen output. */
  screen: string;
  seconds: number;
}

export interface SippProcess {
  child: ChildProcess;
  command: string;
  done: Promise<SippResult>;
}

const quote = (a: string) => (/^[A-Za-z0-9_./:=,@-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);

/** Starts SIPp; `done` resolves when it has exited, with its statistics, response times and errors. */
export function startSipp(o: SippOptions): SippProcess {
  const bin = findSipp();
  if (!bin) throw new Error('sipp is not installed');
  const scenario = o.scenario.startsWith('/') ? o.scenario : join(SCENARIOS, o.scenario);
  const errorFile = join(o.dir, `${o.name}_errors.log`);
  const statFile = join(o.dir, `${o.name}_stats.csv`);
  const args = [
    ...(o.target ? [o.target] : []),
    '-sf', scenario,
    '-t', 'u1',
    '-i', o.localIp,
    '-p', String(o.localPort),
    '-m', String(o.calls),
    '-timeout', `${o.timeoutSeconds}s`,
    '-timeout_error',
    '-recv_timeout', String(o.recvTimeoutMs ?? 10_000),
    '-max_retrans', '3',
    '-nostdin',
    '-default_behaviors', o.byeOnAbort === false ? 'abortunexp' : 'abortunexp,bye',
    '-trace_err', '-error_file', errorFile,
    ...(o.injection ? ['-inf', o.injection] : []),
    ...(o.rate !== undefined ? ['-r', String(o.rate), '-rp', '1000'] : []),
    ...(o.limit !== undefined ? ['-l', String(o.limit)] : []),
    ...(o.stats ? ['-trace_stat', '-stf', statFile, '-fd', '1'] : []),
    ...(o.rtt ? ['-trace_rtt', '-rtt_freq', '1'] : []),
    ...(o.extra ?? []),
  ];
  const command = [bin, ...args].map(quote).join(' ');
  const started = performance.now();
  // Tied: SIPp ends with the process that started it (a killed test or benchmark), not only by -timeout.
  const child = spawnTied(bin, args, { cwd: o.dir, stdio: ['ignore', 'pipe', 'pipe'] });
  // SIPp redraws its screen all along: only the end of it is kept.
  let screen = '';
  const keep = (d: Buffer) => {
    screen = (screen + d.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const done = new Promise<SippResult>((resolvePromise) => {
    child.once('error', (err) => {
      screen += `\n${String(err)}`;
    });
    child.once('close', (code, signal) => {
      const seconds = (performance.now() - started) / 1000;
      resolvePromise({
        code,
        signal,
        command,
        stats: lastStats(statFile),
        rtt: o.rtt ? readRtt(o.dir, scenario, child.pid) : [],
        errors: existsSync(errorFile) ? readFileSync(errorFile, 'utf8').slice(0, 20_000) : '',
        screen: screen.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').slice(-4000),
        seconds,
      });
    });
  });
  return { child, command, done };
}

export const runSipp = (o: SippOptions) => startSipp(o).done;

/** SIPp could not take its port (someone took the free port first): the run never started. */
export const bindFailed = (r: SippResult) => /Unable to bind main socket/.test(`${r.errors}\n${r.screen}`);

/**
 * A run from a UDP port free on `localIp`, picked again when another process took it first (a free
 * port is only free until someone binds it). `build` makes the options for the port (a Contact names it).
 */
export async function runSippOnFreePort(localIp: string, build: (port: number) => SippOptions, attempts = 5, pick: (host: string) => Promise<number> = freeUdpPort): Promise<SippResult> {
  for (let i = 1; ; i++) {
    const r = await runSipp(build(await pick(localIp)));
    if (!bindFailed(r) || i >= attempts) return r;
  }
}

/** The last line of a -trace_stat file, by column (SuccessfulCall(C), FailedCall(C), CallRate(C), …). */
function lastStats(file: string): Record<string, string> | null {
  if (!existsSync(file)) return null;
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  if (lines.length < 2) return null;
  const head = lines[0]!.split(';');
  const last = lines[lines.length - 1]!.split(';');
  return Object.fromEntries(head.map((h, i) => [h.trim(), (last[i] ?? '').trim()]).filter(([h]) => h));
}

/** SIPp's -trace_rtt file ({scenario}_{pid}_rtt.csv in its working directory): Date_ms;response_time_ms;rtd_no. */
function readRtt(dir: string, scenario: string, pid: number | undefined): { rtd: string; ms: number }[] {
  const base = scenario.replace(/^.*\//, '').replace(/\.xml$/, '');
  const file = readdirSync(dir).find((f) => f === `${base}_${pid}_rtt.csv`) ?? readdirSync(dir).find((f) => f.startsWith(`${base}_`) && f.endsWith('_rtt.csv'));
  if (!file) return [];
  const out: { rtd: string; ms: number }[] = [];
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n').slice(1)) {
    const [, ms, rtd] = line.split(';');
    if (ms === undefined || rtd === undefined || !Number.isFinite(Number(ms))) continue;
    out.push({ rtd: rtd.trim(), ms: Number(ms) });
  }
  return out;
}

/** What to show when a run went wrong: the command, the exit, SIPp's unexpected messages and screen. */
export function describe(r: SippResult): string {
  return [`$ ${r.command}`, `exit ${r.code ?? r.signal}`, r.stats ? `stats: successful ${r.stats['SuccessfulCall(C)']}, failed ${r.stats['FailedCall(C)']}` : '', '--- errors (-trace_err):', r.errors || '(none)', '--- screen (end):', r.screen.slice(-2500)].join('\n');
}
