import { and, eq } from 'drizzle-orm';
import { doorEvents, type DoorOutcome } from '../calls/tables.js';
import type { JobEventSink } from '../provisioning/job-events.js';
import { OPEN_DOOR } from './open-door-kind.js';

const OUTCOME: Record<string, DoorOutcome> = { succeeded: 'opened', failed: 'failed', expired: 'expired', canceled: 'canceled' };

/**
 * The door log follows the open-door jobs: an opening asked through the cloud stays `pending` until its
 * job ends, then shows how (a device's own door-opened report may have said `opened` first: it stays).
 */
export function doorLogSink(): JobEventSink {
  return {
    name: 'door-log',
    async handle(events, tx) {
      const finished = events.filter((e) => e.kind === OPEN_DOOR && e.type === 'finished');
      for (const e of finished) {
        const outcome = OUTCOME[e.toState];
        if (!outcome) continue;
        await tx.update(doorEvents).set({ outcome, reason: e.error?.code ?? null }).where(and(eq(doorEvents.jobId, e.jobId), eq(doorEvents.outcome, 'pending')));
      }
    },
  };
}
