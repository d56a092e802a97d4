import t from 'tap';
import { once, waitFor } from '../helpers/service.js';
import { startTestCluster } from '../helpers/cluster.js';

// Real processes from the real launcher: two gateway processes sharing the MQTT port, one engine, one API.

const finished = ['succeeded', 'failed', 'expired', 'canceled'];

t.test('a cluster of processes: sessions spread, commands reach the holding process, a killed gateway loses nothing', async (t) => {
  const cluster = await startTestCluster(t, { gateways: 2, engines: 1, env: { JOB_ACK_TIMEOUT_MS: '1500' } });
  t.equal(cluster.workers.filter((w) => w.role === 'gateway').length, 2, 'two gateway processes');
  const installer = await cluster.createInstaller();
  const token = installer.token;
  const macs = Array.from({ length: 8 }, (_, i) => `0C1105CC${i.toString(16).toUpperCase().padStart(4, '0')}`);
  for (const mac of macs) await cluster.addDevice(token, mac);

  // Devices answer slowly, so their commands are still in flight when a gateway dies.
  const devices = macs.map((mac) => cluster.device(mac, { behaviour: { answerDelayMs: 2500 } }));
  for (const d of devices) {
    d.start();
    await once(d, 'online');
  }
  await waitFor(() => cluster.api('GET', '/api/v1/devices?status=online&pageSize=1', { token }).then((r) => r.body.total), (n) => n === 8);
  // Boot provisioning (factory-state hello) of every device, through whichever process holds it.
  await waitFor(() => devices.every((d) => d.applications.length >= 1), Boolean, 90_000);
  // /metrics on the API process shows every gateway process's sessions (published through Redis).
  const sessionsByProcess = (text: string) =>
    [...text.matchAll(/^intercom_gateway_sessions\{([^}]*)\} (\d+)/gm)].filter((m) => m[1]!.includes('role="gateway"')).map((m) => Number(m[2]));
  const metricsText = await waitFor(
    () => fetch(`${cluster.httpUrl}/metrics`).then((r) => r.text()),
    (text) => sessionsByProcess(text).length === 2 && sessionsByProcess(text).reduce((a, b) => a + b, 0) === 8 && /intercom_queue_jobs\{[^}]*role="engine"/.test(text) &&
      // A device applies before it answers, and the counter follows the outbox after the answer: wait for it too.
      /intercom_jobs_finished_total\{[^}]*kind="provision"[^}]*state="succeeded"/.test(text),
    60_000,
    250,
  );
  t.ok(sessionsByProcess(metricsText).every((n) => n > 0), `each gateway process reports its sessions (${sessionsByProcess(metricsText).join(' + ')})`);
  t.match(metricsText, /intercom_jobs_finished_total\{[^}]*kind="provision"[^}]*state="succeeded"/, 'finished jobs are counted by kind and state');
  t.match(metricsText, /intercom_queue_jobs\{[^}]*role="engine"/, 'the engine reports the queue depth');
  const holders = new Map<string, number>();
  for (const mac of macs) holders.set(mac, (await cluster.holderPid(mac))!);
  const gatewayPids = cluster.workers.filter((w) => w.role === 'gateway').map((w) => w.pid);
  t.same(new Set(holders.values()), new Set(gatewayPids), 'the kernel round-robin gave both gateway processes devices');

  // A command per device, created through the API process, delivered by the engine process.
  const jobs = new Map<string, string>();
  for (const mac of macs) {
    const res = await cluster.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: `Config.Cluster.Marker = ${mac}` } });
    t.equal(res.status, 202);
    jobs.set(mac, res.body.job.id);
  }
  const victim = gatewayPids[0]!;
  const onVictim = macs.filter((m) => holders.get(m) === victim);
  const survivors = macs.filter((m) => holders.get(m) !== victim);
  // Every device on the victim has its command in hand, not yet answered.
  await waitFor(() => onVictim.every((m) => devices[macs.indexOf(m)]!.received.some((c) => c.id === jobs.get(m))), Boolean);
  const restarted = cluster.nextRestart('gateway');
  process.kill(victim, 'SIGKILL');

  const ends = await waitFor(
    () => Promise.all(macs.map((m) => cluster.api('GET', `/api/v1/jobs/${jobs.get(m)}`, { token }).then((r) => r.body))),
    (list) => list.every((j) => finished.includes(j.state)),
    120_000,
    100,
  );
  t.same(
    ends.map((j) => j.state),
    macs.map(() => 'succeeded'),
    'every command succeeded, on the killed process’s devices too',
  );
  for (const mac of macs) {
    const d = devices[macs.indexOf(mac)]!;
    t.equal(d.applications.filter((a) => a.id === jobs.get(mac)).length, 1, `${mac} applied its command once`);
    t.equal(d.config.get('Config.Cluster.Marker'), mac);
  }
  for (const mac of onVictim) {
    const j = ends[macs.indexOf(mac)];
    t.ok(j.attempts >= 2, `${mac}: redelivered after its gateway died (${j.attempts} deliveries)`);
  }
  t.ok(survivors.length > 0, 'devices on the other process were untouched');

  // Everyone is online again, none on the dead process.
  await waitFor(
    () => cluster.sql(`SELECT count(*)::int AS n FROM devices WHERE status = 'online' AND session_gateway NOT LIKE $1`, [`%-${victim}-%`]),
    ([row]) => row.n === 8,
  );
  const listed = await cluster.api('GET', '/api/v1/devices?status=online&pageSize=100', { token });
  t.equal(listed.body.total, 8, 'the API shows all 8 devices online');
  const back = await restarted;
  t.not(back.pid, victim, 'the launcher restarted the gateway process');

  // A one-time Autop too large for a command travels as a document the device fetches from the API
  // process, at the address the engine process put into the command.
  const lines = Array.from({ length: 1000 }, (_, i) => `Config.Cluster.Big${i} = ${'x'.repeat(80)}`);
  const big = await cluster.api('POST', `/api/v1/devices/${macs[0]}/autop/once`, { token, body: { commands: lines } });
  t.equal(big.status, 202);
  const bigEnd = await waitFor(() => cluster.api('GET', `/api/v1/jobs/${big.body.job.id}`, { token }).then((r) => r.body), (j) => finished.includes(j.state), 90_000);
  t.equal(bigEnd.state, 'succeeded', 'the document was fetched, verified and applied');
  t.equal(devices[0]!.config.get('Config.Cluster.Big999'), 'x'.repeat(80));
});

t.test('a device that connects to another process takes its session over; the old end never shows it offline', async (t) => {
  const cluster = await startTestCluster(t, { gateways: 2, engines: 1 });
  const installer = await cluster.createInstaller();
  const token = installer.token;
  const mac = '0C1105CD0001';
  await cluster.addDevice(token, mac);

  const first = cluster.device(mac, { reconnect: false });
  first.start();
  await once(first, 'online');
  const firstHolder = await waitFor(() => cluster.holderPid(mac), (p) => p !== null);

  // Round-robin hands successive connections to alternate processes; another connection is tried until
  // the takeover crosses processes. The holder is read once the new session's presence is written.
  const session = () => cluster.sql(`SELECT session_gateway AS g, session_epoch AS e FROM devices WHERE mac = $1`, [mac]).then(([r]) => ({ pid: Number(String(r.g).split('-').at(-2)), epoch: Number(r.e) }));
  let current = await session();
  let older = first;
  let second = first;
  let secondHolder: number | null = null;
  for (let i = 0; i < 6; i++) {
    second = cluster.device(mac, { reconnect: false });
    const closed = once(older, 'offline');
    second.start();
    await once(second, 'online');
    await closed;
    const previous = current;
    current = await waitFor(session, (s) => s.epoch > previous.epoch);
    secondHolder = current.pid;
    if (secondHolder !== firstHolder) break;
    older = second;
  }
  t.not(secondHolder, firstHolder, 'the new session lives on another process');
  t.equal(first.state, 'offline', 'the older session was closed');

  // A command after the takeover reaches the new session, and the device stays online throughout.
  const job = await cluster.api('POST', `/api/v1/devices/${mac}/autop/once`, { token, body: { commands: 'Config.Takeover.Marker = 1' } });
  const done = await waitFor(() => cluster.api('GET', `/api/v1/jobs/${job.body.job.id}`, { token }).then((r) => r.body), (j) => finished.includes(j.state), 90_000);
  t.equal(done.state, 'succeeded', 'the command reached the process holding the session now');
  t.equal(second.applications.filter((a) => a.id === job.body.job.id).length, 1);
  // The old sessions' ends were written long before the command's answer (presence flushes every 50 ms).
  const [row] = await cluster.sql(`SELECT status, session_epoch AS e FROM devices WHERE mac = $1`, [mac]);
  t.equal(row.status, 'online', 'the old session ending on the other process left the device online');
  t.equal(Number(row.e), current.epoch, 'the status belongs to the newest session');
});
