import { runIn, type Queryable } from '../db/client.js';
import type { HelloFacts } from './channel.js';
import { jobFromRow, type JobRow } from './job-store.js';
import { UNFINISHED_STATE } from './tables.js';
import { JOB_COLUMNS } from './transitions.js';

// The reads of the batched hello path (`ProvisioningEngine.devicesHello` / `devicesReady`): one statement
// for a whole batch of devices, where the one-by-one path reads per device.

/** One device's hello in a batch the gateway hands over (hellos that arrived together). */
export interface HelloOfDevice {
  mac: string;
  hello: HelloFacts;
}

// An array, not a jsonb document: the plan looks each MAC up in the unfinished-jobs index, whatever the
// table's statistics said when the statement was first prepared.
const unfinishedOfMany = `SELECT ${JOB_COLUMNS}
  FROM jobs WHERE mac = ANY($1::text[]) AND ${UNFINISHED_STATE} ORDER BY mac, seq`;

/** The unfinished jobs of many devices in queue order (each device's head first); a device without any is absent. */
export async function unfinishedOfDevices(q: Queryable, macs: string[]): Promise<Map<string, JobRow[]>> {
  const byMac = new Map<string, JobRow[]>();
  if (!macs.length) return byMac;
  for (const raw of await runIn<Record<string, unknown>>(q, { name: 'jobs_unfinished_of_many', text: unfinishedOfMany }, [macs])) {
    const row = jobFromRow(raw);
    const list = byMac.get(row.mac);
    if (list) list.push(row);
    else byMac.set(row.mac, [row]);
  }
  return byMac;
}
