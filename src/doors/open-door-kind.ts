import { z } from 'zod';
import type { JobKindHandler } from '../provisioning/kinds.js';

// Opening a door from the cloud (docs/device-protocol.md, "open-door"): an urgent kind, delivered at once
// beside the device's other jobs, short-lived (opening a minute late is worse than not opening).

export const OPEN_DOOR = 'open-door';

/** What the command carries: the relay, and who asked (shown on the device; `by` echoed in its event). */
export interface OpenDoorParams {
  relay: number;
  requestedBy: { kind: string; name: string | null; by: string | null };
}

export function openDoorKind(): JobKindHandler {
  return {
    kind: OPEN_DOOR,
    urgent: true,
    async command(job) {
      const p = job.params as unknown as OpenDoorParams;
      return { params: { relay: p.relay, requestedBy: p.requestedBy } };
    },
    // A device may say how long the relay stays open; anything else it says is not kept.
    result: z.strictObject({ openSeconds: z.number().int().min(0).max(3600).optional() }),
  };
}
