import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SipStation } from '../../simulators/sip/station.js';
import { findKamailio } from '../../src/calls/kamailio.js';
import { startTestService, SIP_ON_FREE_PORTS } from '../helpers/service.js';

// SIP over TLS for devices and over secure WebSocket for apps, on the embedded database (PGlite): the
// back end answers Kamailio the same way whatever holds the accounts.
t.test('a door phone on TLS and an app on secure WebSocket call each other, on PGlite', { skip: findKamailio() ? false : 'kamailio is not installed (.ci/run installs it)' }, async (t) => {
  const certDir = mkdtempSync(join(tmpdir(), 'icloud-sip-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')], { stdio: 'ignore' });
  const ca = readFileSync(join(certDir, 'cert.pem'));
  const svc = await startTestService(t, {
    DATABASE_URL: undefined,
    TLS_CERT_FILE: join(certDir, 'cert.pem'),
    TLS_KEY_FILE: join(certDir, 'key.pem'),
    MQTTS_PORT: '0',
    ...SIP_ON_FREE_PORTS,
  });
  t.equal(svc.service.database.kind, 'pglite', 'the embedded database');
  const sip = svc.service.sip!;
  t.ok(sip.ports.tls && sip.ports.wss, 'TLS and secure WebSocket listen with a certificate');
  const installer = await svc.createInstaller('Tess');
  const api = (method: string, path: string, body?: unknown) => svc.api(method, `/api/v1${path}`, { token: installer.token, ...(body !== undefined && { body }) });
  const stations: SipStation[] = [];
  t.teardown(() => Promise.all(stations.map((s) => s.stop().catch(() => {}))));

  {
    const site = (await api('POST', '/sites', { kind: 'community', name: 'Secure', timeZone: 'Europe/Berlin' })).body;
    const building = (await api('POST', `/sites/${site.id}/buildings`, { name: 'A' })).body;
    const flat = (await api('POST', `/buildings/${building.id}/apartments`, { number: '11' })).body;
    const door = await svc.addDevice(installer.token, '0C1108000070', { type: 0 });
    await api('PATCH', '/devices/0C1108000070', { siteId: site.id, buildingId: building.id });
    t.equal((await api('PUT', '/devices/0C1108000070/connect-type', { connectType: 'tls' })).status, 202, 'the door phone is moved to TLS');
    await api('PUT', `/sites/${site.id}/app-licences`, { units: 1 });
    const code = await api('POST', `/apartments/${flat.id}/app-registrations`);
    const app = await svc.api('POST', new URL(code.body.registrationUrl).pathname, { body: { name: 'Phone' } });
    t.equal(app.status, 201);
    t.match(app.body.sip.servers[0], { transport: 'wss', port: sip.ports.wss, url: `wss://127.0.0.1:${sip.ports.wss}/` }, 'apps are given secure WebSocket first');

    const doorPhone = new SipStation({ number: door.sip.number, password: door.sip.password, domain: sip.domain, server: { host: '127.0.0.1', port: sip.ports.tls!, transport: 'tls', ca } });
    const phone = new SipStation({ number: app.body.sip.username, password: app.body.sip.password, domain: sip.domain, server: { host: '127.0.0.1', port: sip.ports.wss!, transport: 'wss', ca } });
    stations.push(doorPhone, phone);
    doorPhone.autoAnswer = { ringMs: 0 };
    await Promise.all([doorPhone.start(), phone.start()]);
    t.equal((await doorPhone.register()).status, 200, 'the door phone registers over TLS');
    t.equal((await phone.register()).status, 200, 'the app registers over secure WebSocket');
    const dtmf = new Promise<{ digit: string; from: string }>((resolve) => doorPhone.once('dtmf', resolve));
    const call = await phone.call(door.sip.number);
    await call.sendDtmf('#');
    t.match(await dtmf, { digit: '#', from: app.body.sip.username }, 'the DTMF crosses from WebSocket to TLS');
    await call.hangup();
  }
});
