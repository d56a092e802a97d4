import type { JobEvent, JobEventSink } from '../provisioning/job-events.js';
import type { FinishedJobState, Metrics } from './registry.js';

/** Events counted lately, by id: events handed again after a failed commit are not counted twice. */
const REMEMBERED = 10_000;

/**
 * Counts jobs from the job event outbox: every creation and every finish, whatever path it took (a reset
 * canceling one-time Autop and a deleted device's jobs count too), and how long a device took to answer.
 */
export function metricsSink(metrics: Metrics): JobEventSink {
  const seen = new Set<number>();
  const count = (e: JobEvent) => {
    if (e.type === 'created') metrics.jobCreated(e.kind);
    else if (e.type === 'finished') metrics.jobFinished(e.kind, e.toState as FinishedJobState, e.actor === 'device' ? (e.deliveredAt?.getTime() ?? null) : null, e.at.getTime());
  };
  return {
    name: 'metrics',
    async handle(events) {
      for (const e of events) {
        if (seen.has(e.id)) continue;
        if (seen.size >= REMEMBERED) seen.delete(seen.values().next().value!);
        seen.add(e.id);
        count(e);
      }
    },
  };
}
