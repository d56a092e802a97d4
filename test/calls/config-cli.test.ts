import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import t from 'tap';

// `npm run sip:config`: the external Kamailio's back end is the API processes' SIP_BACKEND_PORT, never
// the public HTTP port (where /internal/sip is not served).
const root = resolve(import.meta.dirname, '../..');
const render = (backend: string, env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'src/calls/config-cli.ts', '--backend', backend, '--modules', '/usr/lib/kamailio/modules'], {
    cwd: root,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, SIP_BACKEND_TOKEN: 'abcdefghijklmnopqrstuvwxyz', SIP_DOMAIN: 'sip.example.com', ...env },
  });

t.test('sip:config renders the back end it is given, and refuses the public port', async (t) => {
  const ok = render('http://api.internal:8090/internal/sip', { SIP_BACKEND_PORT: '8090' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, 'http://api.internal:8090/internal/sip/credentials', 'Kamailio asks the back-end port');

  const publicPort = render('http://api.internal:8080/internal/sip');
  t.equal(publicPort.status, 2);
  t.match(publicPort.stderr, /public HTTP_PORT \(8080\)/);

  const otherPort = render('http://api.internal:8080/internal/sip', { SIP_BACKEND_PORT: '8090' });
  t.equal(otherPort.status, 2);
  t.match(otherPort.stderr, /SIP_BACKEND_PORT=8090/);
});
