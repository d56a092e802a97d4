import { readFileSync } from 'node:fs';
import t from 'tap';
import { environment, loadConfig } from '../src/config.js';

t.test('defaults are the documented ones', async (t) => {
  const c = loadConfig({});
  t.equal(c.http.port, 8080);
  t.equal(c.http.host, '0.0.0.0');
  t.equal(c.mqtt.port, 1883);
  t.equal(c.mqtt.portExplicit, false);
  t.equal(c.mqtt.tls, null);
  t.equal(c.databaseUrl, undefined);
  t.equal(c.dataDir, './data');
  t.same(c.redis, { url: 'redis://127.0.0.1:6379', explicit: false });
});

t.test('port 0 and explicit ports are accepted', async (t) => {
  const c = loadConfig({ HTTP_PORT: '0', MQTT_PORT: '0' });
  t.equal(c.http.port, 0);
  t.equal(c.mqtt.port, 0);
  t.equal(c.mqtt.portExplicit, true);
});

t.test('bad values are named in one clear error', async (t) => {
  t.throws(() => loadConfig({ HTTP_PORT: '70000', DEVICE_FACTORY_SECRET: 'short' }), { name: 'ConfigError' });
  try {
    loadConfig({ HTTP_PORT: '70000', DEVICE_FACTORY_SECRET: 'short' });
  } catch (err) {
    t.match((err as Error).message, /HTTP_PORT/);
    t.match((err as Error).message, /DEVICE_FACTORY_SECRET/);
  }
  t.throws(() => loadConfig({ TLS_CERT_FILE: '/tmp/cert.pem' }), /TLS_CERT_FILE and TLS_KEY_FILE/);
});

t.test("the README's configuration table names every variable the service reads, and no other", async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('\n## ', readme.indexOf('## Configuration') + 1));
  // The first cell of each row names one or more variables in backticks (`A` / `B`, `C`).
  const documented = new Set(
    section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!)),
  );
  const read = Object.keys(environment.shape);
  t.same(read.filter((name) => !documented.has(name)), [], 'every variable is in the table');
  t.same([...documented].filter((name) => !read.includes(name)), [], 'the table names no variable the service ignores');
});

