// A job event follower in a process of its own, for a test that kills it with SIGKILL mid-delivery. Two
// sinks write each event into `sink_ledger` in the transaction that moves their cursor. With HANG set to
// `{sink}:{jobId}`, that sink, once it has written that job's event (uncommitted), prints `hanging` and
// waits forever. Ends when its standard input closes (the test is gone).
import { sql } from 'drizzle-orm';
import { openDatabase } from '../../src/db/client.js';
import { createLogger } from '../../src/logger.js';
import { JobEventFollower, type JobEventSink } from '../../src/provisioning/job-events.js';

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
const url = process.env.DATABASE_URL!;
const [hangSink, hangJob] = (process.env.HANG ?? ':').split(':');
const database = await openDatabase({ url, dataDir: '/tmp' });
const log = createLogger('warn');
const ledger = (name: string): JobEventSink => ({
  name,
  async handle(events, tx) {
    for (const e of events) {
      await tx.execute(sql`INSERT INTO sink_ledger (sink, event_id, job_id) VALUES (${name}, ${e.id}, ${e.jobId})`);
      if (name === hangSink && e.jobId === hangJob) {
        process.stdout.write(`${JSON.stringify({ hanging: e.id })}\n`);
        await new Promise(() => {});
      }
    }
  },
});
const follower = new JobEventFollower({ database, log, listenUrl: url, pollMs: 200 });
follower.register(ledger('ledger-a'));
follower.register(ledger('ledger-b'));
follower.start();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
