import type { HelloContext, JobKindHandler } from './kinds.js';
import type { Configurations } from './configuration.js';
import { commandBytes, MAX_COMMAND_BYTES } from './configuration.js';
import { FACTORY_CONFIG_HASH } from './config-renderer.js';
import type { DeviceService } from '../devices/service.js';
import type { JobRow, JobStore } from './job-store.js';
import type { AutopLine, JobKind } from './tables.js';

/** How long a provisioning job made by a hello may wait for the device. */
const PROVISION_EXPIRY_MS = 24 * 3600_000;

/**
 * A kind whose command delivers the device's effective configuration: regular Autop, provisioning and the
 * SIP connect type. Its params say what the job is for, never the configuration again.
 */
function configurationKind(kind: JobKind, configurations: Configurations, params: (job: JobRow) => Record<string, unknown>): JobKindHandler {
  return {
    kind,
    carriesConfiguration: true,
    async command(job, device) {
      const base = { params: params(job) };
      return { ...base, ...(await configurations.forCommand(device, { id: job.id, kind: job.kind, expiresAt: job.expiresAt.toISOString(), ...base })) };
    },
  };
}

/** The kinds the provisioning engine brings: configuration, one-time Autop, reboot, reset. */
export function provisioningKinds(configurations: Configurations, store: JobStore, now: () => number, devices: Pick<DeviceService, 'exchangeConfigHash' | 'exchangeConfigHashes'>): JobKindHandler[] {
  const provision = configurationKind('provision', configurations, () => ({}));
  return [
    configurationKind('autop', configurations, () => ({})),
    configurationKind('connect-type', configurations, (job) => ({ connectType: job.params.connectType })),
    {
      ...provision,
      // The configuration hash exchange: the device's record keeps what it runs; a device that had applied a
      // configuration and reports the factory state was reset.
      async readHello(mac, hello) {
        const reported = hello.configHash ?? FACTORY_CONFIG_HASH;
        const exchanged = await devices.exchangeConfigHash(mac, reported);
        if (!exchanged) return null;
        const wasReset = reported === FACTORY_CONFIG_HASH && !!exchanged.previous && exchanged.previous !== FACTORY_CONFIG_HASH;
        return { installerId: exchanged.installerId, facts: { wasReset } };
      },
      // A storm's hellos: hashes exchanged in one statement (written only where they changed) and the
      // effective configurations rendered for the batch, so a matching hello costs no statement of its own.
      async readHellos(items) {
        const reports = items.map(({ mac, hello }) => ({ mac, hash: hello.configHash ?? FACTORY_CONFIG_HASH }));
        const exchanged = await devices.exchangeConfigHashes(reports);
        const effective = await configurations.effectiveOfMany([...exchanged.values()].map((e) => e.record));
        const out = new Map<string, { installerId: string; facts: Partial<HelloContext> }>();
        for (const { mac, hash } of reports) {
          const e = exchanged.get(mac);
          if (!e) continue;
          const wasReset = hash === FACTORY_CONFIG_HASH && !!e.previous && e.previous !== FACTORY_CONFIG_HASH;
          const effectiveConfigHash = effective.get(mac)?.hash;
          out.set(mac, { installerId: e.record.installerId, facts: effectiveConfigHash === undefined ? { wasReset } : { wasReset, effectiveConfigHash } });
        }
        return out;
      },
      async afterAnswer(mac, status) {
        if (status.configHash) await devices.exchangeConfigHash(mac, status.configHash);
      },
      // A device whose configuration hash differs from its effective configuration's is provisioned,
      // unless a job that delivers the configuration is already waiting.
      async afterHello(mac, hello: HelloContext, unfinished, carriesConfiguration) {
        if (unfinished.some((j) => carriesConfiguration(j.kind))) return null;
        const effective = hello.effectiveConfigHash ?? (await configurations.effective(mac))?.hash;
        const reported = hello.configHash ?? FACTORY_CONFIG_HASH;
        if (!effective || effective === reported) return null;
        return { job: { kind: 'provision', mac, params: {}, expiresAt: new Date(now() + PROVISION_EXPIRY_MS) }, reason: `the device reported configuration ${reported}` };
      },
    },
    {
      kind: 'autop-once',
      // The command carries the effective configuration too (a device that boots reset with one-time Autop
      // waiting needs no separate provisioning); the one-time lines go beside it, outside the managed
      // configuration, carried out once. What does not fit becomes a document: the configuration first.
      carriesConfiguration: true,
      async command(job, device) {
        const own = job.params.lines;
        const lines = Array.isArray(own) ? (own as AutopLine[]) : job.batchId ? await store.batchLines(job.batchId) : null;
        if (!lines) return { fail: { code: 'lines_missing', message: 'the one-time Autop lines of this job are gone' } };
        const envelope = (params: Record<string, unknown>) => ({ id: job.id, kind: job.kind, expiresAt: job.expiresAt.toISOString(), params });
        let params: Record<string, unknown> = { lines };
        let config = await configurations.forCommand(device, envelope(params));
        if (commandBytes({ ...envelope(params), ...config }) > MAX_COMMAND_BYTES) {
          params = { linesDocument: await configurations.asDocument(job.mac, 'autop-once', 'application/json', Buffer.from(JSON.stringify(lines))) };
          config = await configurations.forCommand(device, envelope(params));
        }
        return { params, ...config };
      },
      // "One-time Autop commands will not be valid once you reset the device" (seed 003): a reset requested
      // ends them at once, a reset the device reports in its hello ends them too.
      endedBy: { kind: 'reset', error: (reset) => ({ code: 'reset', message: `a ${String(reset.params.mode)} reset was requested` }) },
      hello(_job, hello) {
        return hello.wasReset ? { type: 'finish', state: 'canceled', error: { code: 'reset', message: 'the device was reset' } } : null;
      },
    },
    { kind: 'reboot', command: async () => ({ params: {} }) },
    { kind: 'reset', command: async (job) => ({ params: { mode: job.params.mode } }) },
  ];
}
