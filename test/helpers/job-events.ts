import { randomBytes } from 'node:crypto';
import type { JobEvent, JobEventFollower } from '../../src/provisioning/job-events.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface RecordedEvents {
  events: JobEvent[];
  /** Resolves with the first event (recorded already or to come) that `match` accepts. */
  next(match: (e: JobEvent) => boolean, timeoutMs?: number): Promise<JobEvent>;
}

/**
 * A test sink on a running follower: records every job event from the moment it is registered (the
 * outbox's oldest event still waiting, since a new sink starts there) and lets a test wait for one.
 */
export function recordJobEvents(t: Teardown, follower: JobEventFollower | null): RecordedEvents {
  if (!follower) throw new Error('this process follows no job event outbox');
  const events: JobEvent[] = [];
  const waiters = new Set<{ match: (e: JobEvent) => boolean; resolve: (e: JobEvent) => void }>();
  const name = `test-${randomBytes(4).toString('hex')}`;
  follower.register({
    name,
    async handle(batch) {
      for (const e of batch) {
        events.push(e);
        for (const w of waiters) if (w.match(e)) (waiters.delete(w), w.resolve(e));
      }
    },
  });
  t.teardown(() => follower.unregister(name));
  return {
    events,
    next(match, timeoutMs = 60_000) {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => (waiters.delete(waiter), reject(new Error('timed out waiting for a job event'))), timeoutMs);
        const waiter = { match, resolve: (e: JobEvent) => (clearTimeout(timer), resolve(e)) };
        waiters.add(waiter);
      });
    },
  };
}

/** Matches the event of one job's transition into a state (and of a type, when given). */
export const eventOf = (jobId: string, toState: string, type?: JobEvent['type']) => (e: JobEvent) => e.jobId === jobId && e.toState === toState && (!type || e.type === type);
