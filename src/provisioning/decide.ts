import type { JobError, JobState } from './tables.js';

/** What the engine needs to know of a job to decide its next step. */
export interface JobFacts {
  state: JobState;
  attempts: number;
  expiresAt: number;
  deliveredAt: number | null;
  deadlineAt: number | null;
  /** Whether it heads its device's queue (a device runs its jobs one at a time, in creation order). */
  isHead: boolean;
}

export interface DeliveryPolicy {
  /** How long a device has to answer a delivery before it is redelivered (doubling per attempt). */
  ackTimeoutMs: number;
  maxAckBackoffMs: number;
  /** How long an accepted or in-progress command may go without news. */
  inProgressTimeoutMs: number;
  /** Deliveries of one command before its job fails with `no_answer`. */
  maxAttempts: number;
}

/**
 * A kind's rule for a job the device has accepted: silence past the deadline fails it with `silence`
 * (connected or not) instead of redelivering, and while `awaitHello` no redelivery is due at all (the
 * device's next hello decides, e.g. an upgrade rebooting).
 */
export interface InProgressRule {
  silence: JobError;
  awaitHello: boolean;
}

export type Decision =
  | { action: 'finish'; state: 'failed' | 'expired'; error: JobError }
  | { action: 'wait'; until: number }
  | { action: 'deliver'; state: JobState; attempts: number; deadline: number };

/**
 * The engine's one decision for a job: a pure function of the job, when the device's current session
 * began (null when it is not connected or has not said hello), the clock and the delivery policy.
 */
export function decide(job: JobFacts, connectedSince: number | null, now: number, policy: DeliveryPolicy, rule: InProgressRule | null = null): Decision {
  if (now >= job.expiresAt) return { action: 'finish', state: 'expired', error: { code: 'expired', message: `not finished before ${new Date(job.expiresAt).toISOString()}` } };
  if (!job.isHead) return { action: 'wait', until: job.expiresAt };
  const deadline = job.deadlineAt ?? 0;
  const ruled = rule !== null && job.state === 'in-progress';
  if (ruled) {
    if (now >= deadline) return { action: 'finish', state: 'failed', error: rule.silence };
    if (rule.awaitHello) return { action: 'wait', until: Math.min(deadline, job.expiresAt) };
  }
  // Not connected: delivered when the device next says hello; a ruled job still times out meanwhile.
  if (connectedSince === null) return { action: 'wait', until: ruled ? Math.min(deadline, job.expiresAt) : job.expiresAt };
  const due = job.state === 'queued' || job.deliveredAt === null || now >= deadline || connectedSince > job.deliveredAt;
  if (!due) return { action: 'wait', until: Math.min(deadline, job.expiresAt) };
  if (job.attempts >= policy.maxAttempts) {
    return { action: 'finish', state: 'failed', error: { code: 'no_answer', message: `the device did not answer ${job.attempts} deliveries` } };
  }
  const backoff = Math.min(policy.ackTimeoutMs * 2 ** job.attempts, policy.maxAckBackoffMs);
  return {
    action: 'deliver',
    state: job.state === 'queued' ? 'dispatched' : job.state,
    attempts: job.attempts + 1,
    deadline: now + (job.state === 'in-progress' ? policy.inProgressTimeoutMs : backoff),
  };
}
