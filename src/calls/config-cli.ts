import { ConfigError, loadConfig } from '../config.js';
import { findKamailio, renderKamailioConfig } from './kamailio.js';

// `npm run sip:config -- --backend http://api.internal:8090/internal/sip > kamailio.cfg`: the configuration
// of an external Kamailio (SIP_SERVER), rendered from the same template and the same SIP_* variables the
// service reads, so the two agree on ports, domain, back-end token and back-end port (SIP_BACKEND_PORT,
// never the public HTTP_PORT).

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};

try {
  const config = loadConfig(process.env);
  const backend = arg('backend');
  if (!backend || !/^https?:\/\/[^\s]+\/internal\/sip$/.test(backend)) throw new ConfigError('--backend <http(s)://host:port/internal/sip> is required: where Kamailio reaches the API processes');
  const backendPort = Number(new URL(backend).port || (backend.startsWith('https:') ? 443 : 80));
  if (config.sip.backend.port && backendPort !== config.sip.backend.port) throw new ConfigError(`--backend names port ${backendPort}, but the API processes serve the SIP back end on SIP_BACKEND_PORT=${config.sip.backend.port}`);
  if (!config.sip.backend.port && backendPort === config.http.port) throw new ConfigError(`--backend names the public HTTP_PORT (${backendPort}): the SIP back end listens on SIP_BACKEND_PORT of the API processes (set it, e.g. 8090)`);
  if (!config.sip.backendToken) throw new ConfigError('SIP_BACKEND_TOKEN must be set: the API processes check it');
  const domain = config.sip.domain ?? config.sip.publicHost ?? config.sip.server;
  if (!domain || domain === 'off') throw new ConfigError('set SIP_DOMAIN (or SIP_PUBLIC_HOST): the SIP domain and digest realm');
  const tlsCert = process.env.TLS_CERT_FILE;
  const tlsKey = process.env.TLS_KEY_FILE;
  const text = renderKamailioConfig(
    {
      listenHost: config.sip.listenHost,
      publicHost: config.sip.publicHost ?? domain,
      domain,
      ports: config.sip.ports,
      tls: tlsCert && tlsKey ? { certFile: tlsCert, keyFile: tlsKey } : null,
      backendUrl: backend,
      backendToken: config.sip.backendToken,
      authFailures: config.sip.authFailures,
      authBlockSeconds: config.sip.authBlockSeconds,
      ringTimeoutSeconds: config.sip.ringTimeoutSeconds,
      children: config.sip.workers,
      maxConnections: config.sip.maxConnections,
      logLevel: 'warn',
      modulesDir: arg('modules') ?? findKamailio()?.modulesDir ?? '/usr/lib/x86_64-linux-gnu/kamailio/modules',
    },
    tlsCert && tlsKey ? (arg('tls-config') ?? '/etc/kamailio/tls.cfg') : null,
  );
  process.stdout.write(text);
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}
