import { and, inArray, isNull, sql } from 'drizzle-orm';
import type { JobEventSink } from '../provisioning/job-events.js';
import { batchFinishedAt } from '../provisioning/service.js';
import { upgrades } from './tables.js';

/**
 * Follows upgrade jobs through the job event outbox: when an upgrade's last device job finishes (in any
 * state, canceled by a device deletion or a forced removal included), the upgrade records when. Written
 * in the sink's transaction, so it happens once whatever is killed when.
 */
export function upgradeStatusSink(): JobEventSink {
  return {
    name: 'upgrade-status',
    async handle(events, tx) {
      const ids = [...new Set(events.filter((e) => e.kind === 'upgrade' && e.type === 'finished' && e.batchId).map((e) => e.batchId!))];
      if (!ids.length) return;
      const finishedAt = batchFinishedAt(sql`"upgrades"."id"`);
      await tx
        .update(upgrades)
        .set({ executedAt: finishedAt, updatedAt: sql`greatest(${upgrades.updatedAt}, coalesce(${finishedAt}, ${upgrades.updatedAt}))` })
        .where(and(inArray(upgrades.id, ids), isNull(upgrades.executedAt), sql`${upgrades.startedAt} IS NOT NULL`));
    },
  };
}
