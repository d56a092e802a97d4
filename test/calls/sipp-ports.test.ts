import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bindFailed, findSipp, runSipp, runSippOnFreePort } from '../../bench/lib/sipp.js';
import { freeUdpPort } from '../../src/infra/net.js';

// A "free" port is free only until someone binds it: CI once lost a SIPp run (errno 98) to a port taken
// between the pick and SIPp's bind. The run is made again from another port.
if (!findSipp()) t.plan(0, 'sipp is not installed (Debian: apt-get install sip-tester)');
else {
  const dir = mkdtempSync(join(tmpdir(), 'sipp-ports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const taken = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => taken.bind(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const takenPort = taken.address().port;
  // The monitor UAS, nobody calling: it binds (or not) at once and ends at its one-second bound.
  const options = (localPort: number, name: string) => ({ scenario: 'monitor-uas.xml', localIp: '127.0.0.1', localPort, dir, name, calls: 1, timeoutSeconds: 1, byeOnAbort: false });

  t.test('a run on a port another process holds fails to bind', async (t) => {
    const r = await runSipp(options(takenPort, 'direct'));
    t.ok(bindFailed(r), 'SIPp reports that it could not bind its main socket');
  });

  t.test('runSippOnFreePort picks again when the port it was given is taken', async (t) => {
    const picks: number[] = [];
    const pick = async (host: string) => {
      const port = picks.length === 0 ? takenPort : await freeUdpPort(host);
      picks.push(port);
      return port;
    };
    const r = await runSippOnFreePort('127.0.0.1', (port) => options(port, `pick${picks.length}`), 5, pick);
    t.equal(picks.length, 2, 'a second port was picked');
    t.equal(picks[0], takenPort);
    t.notOk(bindFailed(r), 'the second run bound its socket');
  });
}
