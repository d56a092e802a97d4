import type { JobKindHandler } from '../provisioning/kinds.js';
import type { JobError } from '../provisioning/tables.js';

/** What a device reports it is doing within an upgrade (the `stage` of its `in-progress` answers). */
export const upgradeStages = ['downloading', 'installing', 'rebooting'] as const;
export type UpgradeStage = (typeof upgradeStages)[number];
const isStage = (s: unknown): s is UpgradeStage => (upgradeStages as readonly unknown[]).includes(s);

/** Stages after the download: from here the device's next hello decides the upgrade. */
const AWAITING_HELLO: readonly UpgradeStage[] = ['installing', 'rebooting'];
/** Why an upgrade that went silent failed, by the stage it was last in. */
const SILENCE: Record<UpgradeStage, JobError> = {
  downloading: { code: 'download_incomplete', message: 'the download did not finish in time' },
  installing: { code: 'install_timeout', message: 'the installation did not finish in time' },
  rebooting: { code: 'no_hello', message: 'the device did not say hello after rebooting in time' },
};

/**
 * The `upgrade` job kind, registered with the provisioning engine by the firmware domain. The command
 * names the image and where to download it; the device reports stages; success is only the hello that
 * reports the target version, never the device's word; silence fails by stage, connected or not.
 */
export function upgradeKind(firmwareUrl: (firmwareId: string) => string): JobKindHandler {
  return {
    kind: 'upgrade',
    async command(job) {
      return { params: { ...job.params, url: firmwareUrl(String(job.params.firmwareId)) } };
    },
    inProgress(job) {
      const stage = isStage(job.stage) ? job.stage : 'downloading';
      return { silence: SILENCE[stage], awaitHello: AWAITING_HELLO.includes(stage) };
    },
    answer(status) {
      switch (status.state) {
        case 'accepted':
        case 'in-progress':
          return { type: 'progress', progress: status.progress ?? null, stage: isStage(status.stage) ? status.stage : null };
        case 'succeeded':
          return { type: 'ignore', reason: 'an upgrade succeeds by the hello with the new version' };
        case 'failed':
          return { type: 'finish', state: 'failed', error: status.error ?? { code: 'device_failed', message: 'the device reported failure' } };
      }
    },
    hello(job, hello) {
      if (!hello.firmware) return null;
      const target = String(job.params.version);
      if (hello.firmware === target) return { type: 'finish', state: 'succeeded', error: null, progress: 100 };
      if (job.state === 'in-progress' && isStage(job.stage) && AWAITING_HELLO.includes(job.stage)) {
        return { type: 'finish', state: 'failed', error: { code: 'old_version', message: `the device came back on ${hello.firmware} instead of ${target}` } };
      }
      return null;
    },
  };
}
