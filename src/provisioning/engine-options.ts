import type { Redis } from 'ioredis';
import type { DeviceService } from '../devices/service.js';
import type { Logger } from '../logger.js';
import type { CommandChannel } from './channel.js';
import type { DeliveryPolicy } from './decide.js';
import type { JobStore } from './job-store.js';
import type { JobKinds } from './kinds.js';
import type { WakeGenerations } from './twins.js';

export interface EngineOptions {
  store: JobStore;
  /** A Redis connection to copy: the queue and the worker each get their own. */
  redis: Redis;
  devices: DeviceService;
  kinds: JobKinds;
  channel: CommandChannel;
  logger: Logger;
  /** Namespace of this deployment's queues in Redis (derived from its database). */
  queuePrefix: string;
  policy: DeliveryPolicy;
  concurrency: number;
  /** How long a request waits for Redis to take new jobs before it answers 503. */
  queueTimeoutMs: number;
  /** How often PostgreSQL and BullMQ are reconciled (besides at start and whenever Redis comes back). */
  reconcileIntervalMs: number;
  /** Wake-up counters: in memory for one process; shared (Redis) when several processes wake and drive jobs. */
  wakes?: WakeGenerations;
  /** False in processes that create and wake jobs but do not drive them (gateway and API roles of a cluster). */
  worker?: boolean;
  /** The machine's clock (milliseconds); the job store is given the same one. */
  now?: () => number;
}

/**
 * What the engine did that is not a job transition (transitions are followed through the job event
 * outbox): for tests and diagnostics, never for behaviour.
 */
export interface EngineObserver {
  /** A device's hello has been processed and the device handed its jobs (provisioning queued if needed). */
  helloProcessed?(mac: string): void;
  /** A device's answer has been processed, whether or not it changed its job. */
  answerProcessed?(mac: string, jobId: string): void;
  /** Reconciliation re-added these jobs to the queue. */
  reconciled?(readded: string[]): void;
}
