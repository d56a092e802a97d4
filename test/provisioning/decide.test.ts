import t from 'tap';
import { decide, type DeliveryPolicy, type JobFacts } from '../../src/provisioning/decide.js';

// The engine's decision step with an injected clock: no Redis, no PostgreSQL, no waiting.
const policy: DeliveryPolicy = { ackTimeoutMs: 10_000, maxAckBackoffMs: 300_000, inProgressTimeoutMs: 300_000, maxAttempts: 5 };
const T0 = Date.UTC(2026, 10, 29, 12);
const job = (over: Partial<JobFacts> = {}): JobFacts => ({ state: 'queued', attempts: 0, expiresAt: T0 + 7 * 86_400_000, deliveredAt: null, deadlineAt: null, isHead: true, ...over });
const silence = { silence: { code: 'no_hello', message: 'silent' }, awaitHello: false };

t.test('a queued job heading a connected device is delivered, with the first ack deadline', async (t) => {
  t.same(decide(job(), T0 - 1000, T0, policy), { action: 'deliver', state: 'dispatched', attempts: 1, deadline: T0 + 10_000 });
});

t.test('a job waits while the device is offline or an earlier job of it runs, until it expires', async (t) => {
  t.same(decide(job(), null, T0, policy), { action: 'wait', until: job().expiresAt });
  t.same(decide(job({ isHead: false }), T0 - 1000, T0, policy), { action: 'wait', until: job().expiresAt });
});

t.test('an unanswered delivery is redelivered after its deadline, with the deadline doubling, then fails', async (t) => {
  let facts = job();
  let now = T0;
  const deadlines: number[] = [];
  for (let attempt = 0; attempt < policy.maxAttempts; attempt++) {
    const d = decide(facts, T0 - 1000, now, policy);
    if (d.action !== 'deliver') throw new Error(`expected a delivery, got ${JSON.stringify(d)}`);
    deadlines.push(d.deadline - now);
    t.same(decide({ ...facts, state: d.state, attempts: d.attempts, deliveredAt: now, deadlineAt: d.deadline }, T0 - 1000, d.deadline - 1, policy), { action: 'wait', until: d.deadline }, 'nothing before the deadline');
    facts = { ...facts, state: d.state, attempts: d.attempts, deliveredAt: now, deadlineAt: d.deadline };
    now = d.deadline;
  }
  t.same(deadlines, [10_000, 20_000, 40_000, 80_000, 160_000]);
  t.match(decide(facts, T0 - 1000, now, policy), { action: 'finish', state: 'failed', error: { code: 'no_answer', message: /5 deliveries/ } });
});

t.test('the ack backoff is capped', async (t) => {
  const d = decide(job({ state: 'dispatched', attempts: 10, deliveredAt: T0 - 1, deadlineAt: T0 }), T0 - 1000, T0, { ...policy, maxAttempts: 20 });
  t.match(d, { action: 'deliver', deadline: T0 + 300_000 });
});

t.test('a device that reconnects after a delivery gets the command again at once', async (t) => {
  const delivered = job({ state: 'dispatched', attempts: 1, deliveredAt: T0 - 500, deadlineAt: T0 + 9_500 });
  t.same(decide(delivered, T0 - 2000, T0, policy), { action: 'wait', until: T0 + 9_500 }, 'same session: wait for the answer');
  t.match(decide(delivered, T0 - 100, T0, policy), { action: 'deliver', attempts: 2 }, 'a newer session: redeliver');
});

t.test('an expired job ends expired, whatever else holds', async (t) => {
  t.match(decide(job({ expiresAt: T0 }), T0 - 1000, T0, policy), { action: 'finish', state: 'expired', error: { code: 'expired' } });
  t.match(decide(job({ expiresAt: T0, isHead: false }), null, T0 + 1, policy), { action: 'finish', state: 'expired' });
});

t.test('an accepted job goes silent: redelivered by default, failed by its kind rule even offline', async (t) => {
  const accepted = job({ state: 'in-progress', attempts: 1, deliveredAt: T0 - 400_000, deadlineAt: T0 - 1 });
  t.match(decide(accepted, T0 - 500_000, T0, policy), { action: 'deliver', state: 'in-progress', deadline: T0 + 300_000 }, 'no rule: redeliver with the in-progress timeout');
  t.same(decide(accepted, null, T0, policy, silence), { action: 'finish', state: 'failed', error: silence.silence }, 'rule: fails, connected or not');
  const early = { ...accepted, deadlineAt: T0 + 1000 };
  t.same(decide(early, null, T0, policy, silence), { action: 'wait', until: T0 + 1000 }, 'offline, the rule still wakes at the deadline');
  t.same(decide(early, T0 - 1, T0, policy, { ...silence, awaitHello: true }), { action: 'wait', until: T0 + 1000 }, 'awaiting the hello: no redelivery even after a reconnect');
});
