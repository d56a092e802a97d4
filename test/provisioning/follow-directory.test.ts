import { sql } from 'drizzle-orm';
import t from 'tap';
import { once, startTestService, waitFor } from '../helpers/service.js';

// A directory change skips devices whose configuration-carrying job is still queued: that job must then
// render the configuration only once it has left `queued`, or it delivers what it read before the change.

const svc = await startTestService(t);
const alice = await svc.createInstaller('Alice');
const api = (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: alice.token, body });
const finished = ['succeeded', 'failed', 'expired', 'canceled'];
const jobsOf = async (mac: string) => (await api('GET', `/jobs?mac=${mac}&pageSize=100`)).body.items as any[];
/** Every directory change marked so far has been rendered and its devices provisioned. */
const followed = () =>
  waitFor(
    async () => (await svc.service.follower.settled(), (await svc.sql('select count(*)::int as n from directory_changes'))[0].n as number),
    (n) => n === 0,
  );

t.test('a queued job being delivered while the directory changes delivers the changed directory', async (t) => {
  const site = (await api('POST', '/sites', { kind: 'community', name: 'Race', timeZone: 'UTC' })).body;
  const building = (await api('POST', `/sites/${site.id}/buildings`, { name: 'A' })).body;
  const flat = (await api('POST', `/buildings/${building.id}/apartments`, { number: '101' })).body;
  const monitor = '0C1110000002';
  const gate = '0C1110000001';
  await svc.addDevice(alice.token, monitor, { type: 2, name: 'Kitchen' });
  await api('PATCH', `/devices/${monitor}`, { siteId: site.id, apartmentId: flat.id });
  await followed();
  const [job] = await jobsOf(monitor);
  t.match(job, { kind: 'provision', state: 'queued' }, 'the offline monitor has one provisioning job waiting');

  // The job's row is held, so its delivery stops at the dispatch statement (after its command was built,
  // before the fix); the directory changes while it waits there.
  let release!: () => void;
  let holder!: number;
  const held = svc.service.database.db.transaction(async (tx) => {
    holder = ((await tx.execute(sql`select pg_backend_pid() as pid`)) as unknown as { rows: { pid: number }[] }).rows[0]!.pid;
    await tx.execute(sql`select id from jobs where id = ${job.id} for update`);
    await new Promise<void>((resolve) => (release = resolve));
  });
  await waitFor(() => holder, Boolean);
  const sim = svc.device(monitor);
  sim.start();
  await once(sim, 'online');
  await waitFor(() => svc.sql('select pid from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [holder]), (rows) => rows.length === 1);

  await svc.addDevice(alice.token, gate, { type: 0, name: 'Main gate' });
  await api('PATCH', `/devices/${gate}`, { siteId: site.id });
  await followed();
  release();
  await held;

  await waitFor(() => jobsOf(monitor), (js) => js.length > 0 && js.every((j) => finished.includes(j.state)));
  await followed();
  await waitFor(() => jobsOf(monitor), (js) => js.every((j) => finished.includes(j.state)));
  const contacts = sim.directory.get('contacts')?.content as any;
  t.same(contacts?.entrances?.map((e: any) => e.name), ['Main gate'], 'the monitor knows the door phone placed while its job was being delivered');
  t.ok((await jobsOf(monitor)).every((j) => j.state === 'succeeded'));
  await sim.stop(false);
});
