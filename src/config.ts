import { isIP } from 'node:net';
import { z } from 'zod';

// Environment variables are read once here and passed down; modules never read process.env.

const port = z.coerce.number().int().min(0).max(65535);
const emptyToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const optionalString = z.preprocess(emptyToUndefined, z.string().optional());
const positiveInt = (def: number) => z.coerce.number().int().positive().default(def);

/** Every environment variable the service reads, with its validation and default (the README table lists them). */
export const environment = z
  .object({
    ROLE: z.enum(['all', 'gateway', 'engine', 'api']).default('all'),
    HTTP_HOST: z.string().default('0.0.0.0'),
    HTTP_PORT: port.default(8080),
    MQTT_HOST: z.string().default('0.0.0.0'),
    MQTT_PORT: z.preprocess(emptyToUndefined, port.optional()),
    MQTTS_PORT: port.default(8883),
    MQTT_WS_PORT: port.default(8083),
    TLS_CERT_FILE: optionalString,
    TLS_KEY_FILE: optionalString,
    DATABASE_URL: optionalString,
    DATABASE_POOL_SIZE: positiveInt(20),
    DATABASE_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(750),
    DATABASE_QUERY_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
    DATA_DIR: z.string().default('./data'),
    REDIS_URL: optionalString,
    DEVICE_FACTORY_SECRET: z.preprocess(emptyToUndefined, z.string().min(16, 'must be at least 16 characters').optional()),
    ADMIN_TOKEN: z.preprocess(emptyToUndefined, z.string().min(20, 'must be at least 20 characters').optional()),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    MQTT_MAX_CONNECTIONS: positiveInt(19000),
    MQTT_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(0).default(1000),
    MQTT_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(1000).max(120_000).default(30_000),
    HTTP_MAX_CONNECTIONS: positiveInt(512),
    HTTP_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().min(0).default(64),
    HTTP_HEADERS_TIMEOUT_MS: z.coerce.number().int().min(1000).max(120_000).default(5000),
    HTTP_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1000).default(300_000),
    HTTP_KEEP_ALIVE_TIMEOUT_MS: z.coerce.number().int().min(1000).max(600_000).default(5000),
    HTTP_TRUST_PROXY: z.preprocess(
      emptyToUndefined,
      z
        .string()
        .transform((v) => v.split(',').map((a) => a.trim()))
        .refine((list) => list.every(isAddressOrRange), 'a comma-separated list of IP addresses or CIDR ranges')
        .optional(),
    ),
    PRESENCE_FLUSH_MS: positiveInt(200),
    AUTH_FAILURES_PER_MINUTE: positiveInt(30),
    DEVICE_EVENTS_PER_MINUTE: positiveInt(30),
    MQTT_MAX_PAYLOAD_BYTES: positiveInt(64 * 1024),
    SHUTDOWN_GRACE_MS: positiveInt(10000),
    JOB_ACK_TIMEOUT_MS: positiveInt(10_000),
    JOB_IN_PROGRESS_TIMEOUT_MS: positiveInt(300_000),
    JOB_MAX_ATTEMPTS: positiveInt(5),
    JOB_WORKER_CONCURRENCY: positiveInt(50),
    PRESENCE_OFFLINE_GRACE_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
    PRESENCE_FLAP_COUNT: z.coerce.number().int().min(1).max(1000).default(5),
    PRESENCE_FLAP_MINUTES: z.coerce.number().int().min(1).max(1440).default(10),
    SITE_OUTAGE_MIN_DEVICES: z.coerce.number().int().min(1).default(10),
    SITE_OUTAGE_SHARE: z.coerce.number().min(0).max(1).default(0.5),
    WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(10_000),
    WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(10).max(3600_000).default(5000),
    WEBHOOK_RETRY_HOURS: z.coerce.number().min(0.001).max(168).default(72),
    WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(256),
    WEBHOOK_ENDPOINT_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(128),
    WEBHOOK_ALLOWED_NETWORKS: z.preprocess(
      emptyToUndefined,
      z
        .string()
        .transform((v) => v.split(',').map((a) => a.trim()))
        .refine((list) => list.every(isAddressOrRange), 'a comma-separated list of IP addresses or CIDR ranges')
        .optional(),
    ),
    EVENT_RETENTION_HOURS: z.coerce.number().min(1).max(24 * 30).default(96),
    OPEN_DOOR_EXPIRY_SECONDS: z.coerce.number().int().min(1).max(60).default(10),
    OPEN_DOOR_WAIT_MS: z.coerce.number().int().min(0).max(10_000).default(3000),
    QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/).default('ic'),
    QUEUE_TIMEOUT_MS: positiveInt(3000),
    RECONCILE_INTERVAL_MS: positiveInt(30_000),
    FIRMWARE_MAX_BYTES: positiveInt(256 * 1024 * 1024),
    FIRMWARE_MAX_DOWNLOADS: positiveInt(200),
    PUBLIC_URL: z.preprocess(emptyToUndefined, z.url({ protocol: /^https?$/ }).optional()),
    SIP_SERVER: z.preprocess(emptyToUndefined, z.string().regex(/^(off|[A-Za-z0-9.:\[\]-]{1,253})$/, 'off, or the host of an external SIP server').optional()),
    SIP_HOST: z.string().default('0.0.0.0'),
    SIP_PUBLIC_HOST: optionalString,
    SIP_DOMAIN: z.preprocess(emptyToUndefined, z.string().regex(/^[A-Za-z0-9.-]{1,253}$/, 'a host name or IPv4 address').optional()),
    SIP_UDP_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_TCP_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_TLS_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_WS_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_WSS_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_BACKEND_HOST: z.string().default('127.0.0.1'),
    SIP_BACKEND_PORT: z.preprocess(emptyToUndefined, port.optional()),
    SIP_BACKEND_TOKEN: z.preprocess(emptyToUndefined, z.string().regex(/^[A-Za-z0-9_-]{24,128}$/, '24 to 128 letters, digits, _ or -').optional()),
    SIP_AUTH_FAILURES: positiveInt(10),
    SIP_AUTH_BLOCK_SECONDS: positiveInt(60),
    SIP_RING_TIMEOUT_SECONDS: z.coerce.number().int().min(5).max(300).default(30),
    SIP_WORKERS: z.coerce.number().int().min(1).max(64).default(4),
    SIP_MAX_CONNECTIONS: positiveInt(16000),
    SPREADSHEET_MAX_UNZIPPED_BYTES: positiveInt(48 * 1024 * 1024),
    SPREADSHEET_MAX_PART_BYTES: positiveInt(32 * 1024 * 1024),
    SPREADSHEET_MAX_CELLS: positiveInt(1_000_000),
    SPREADSHEET_WORKER_MEMORY_MB: z.coerce.number().int().min(64).max(16384).default(256),
    SPREADSHEET_DEADLINE_MS: positiveInt(30_000),
    SPREADSHEET_WORKERS: z.coerce.number().int().min(1).max(32).default(2),
  })
  .superRefine((c, ctx) => {
    if (Boolean(c.TLS_CERT_FILE) !== Boolean(c.TLS_KEY_FILE)) {
      ctx.addIssue({ code: 'custom', path: ['TLS_CERT_FILE'], message: 'TLS_CERT_FILE and TLS_KEY_FILE must be given together' });
    }
    if (c.SIP_SERVER && c.SIP_SERVER !== 'off' && !c.SIP_BACKEND_TOKEN) {
      ctx.addIssue({ code: 'custom', path: ['SIP_BACKEND_TOKEN'], message: 'an external SIP server (SIP_SERVER) calls the back end with SIP_BACKEND_TOKEN: set it on both' });
    }
    if (c.SIP_SERVER && c.SIP_SERVER !== 'off' && (c.ROLE === 'all' || c.ROLE === 'api') && !c.SIP_BACKEND_PORT) {
      ctx.addIssue({ code: 'custom', path: ['SIP_BACKEND_PORT'], message: 'an external SIP server (SIP_SERVER) reaches the back end at SIP_BACKEND_HOST:SIP_BACKEND_PORT: set a port (not 0), and the same in its --backend' });
    }
    if (c.HTTP_HEADERS_TIMEOUT_MS > c.HTTP_REQUEST_TIMEOUT_MS) {
      ctx.addIssue({ code: 'custom', path: ['HTTP_HEADERS_TIMEOUT_MS'], message: 'must not exceed HTTP_REQUEST_TIMEOUT_MS (the headers are part of the request)' });
    }
  });

/** An IP address, or an address with a prefix length (10.0.0.0/8, fd00::/8). */
function isAddressOrRange(v: string): boolean {
  const [address = '', prefix, ...rest] = v.split('/');
  const family = isIP(address);
  if (!family || rest.length) return false;
  return prefix === undefined || (/^[0-9]{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/** Calls: Kamailio as a child (`child`), an external one (`external`, SIP_SERVER), or none (`off`). */
const sipMode = (server: string | undefined): 'child' | 'external' | 'off' => (server === 'off' ? 'off' : server ? 'external' : 'child');

/** The environment, validated, as the parts of the service take it: the one declaration of `Config`. */
const configSchema = environment.transform((c) => ({
  /** What a process runs: everything (one process), or one part of a cluster (docs/deployment.md). */
  role: c.ROLE,
  http: {
    host: c.HTTP_HOST,
    port: c.HTTP_PORT,
    maxConnections: c.HTTP_MAX_CONNECTIONS,
    maxConnectionsPerAddress: c.HTTP_MAX_CONNECTIONS_PER_ADDRESS,
    headersTimeoutMs: c.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: c.HTTP_REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: c.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    /**
     * The proxies (HAProxy) whose X-Forwarded-For names the client; empty: none is trusted.
     * They are also exempt from `maxConnectionsPerAddress` (HAProxy carries every client's connections).
     */
    trustProxy: c.HTTP_TRUST_PROXY ?? [],
  },
  mqtt: {
    host: c.MQTT_HOST,
    /** Port to listen on; `portExplicit` false means 1883 was assumed and a taken port falls back to a free one. */
    port: c.MQTT_PORT ?? 1883,
    portExplicit: c.MQTT_PORT !== undefined,
    tls: c.TLS_CERT_FILE && c.TLS_KEY_FILE ? { port: c.MQTTS_PORT, certFile: c.TLS_CERT_FILE, keyFile: c.TLS_KEY_FILE } : null,
    maxConnections: c.MQTT_MAX_CONNECTIONS,
    /** Connections from one source (IPv4 address, IPv6 /64) at most; 0: no cap. */
    maxConnectionsPerAddress: c.MQTT_MAX_CONNECTIONS_PER_ADDRESS,
    /** A connection whose CONNECT has not been read this long after it was accepted is closed. */
    connectTimeoutMs: c.MQTT_CONNECT_TIMEOUT_MS,
    /** Sources exempt from that cap: the trusted proxies (HTTP_TRUST_PROXY), which carry many devices. */
    proxies: c.HTTP_TRUST_PROXY ?? [],
    /** MQTT over WebSocket for a gateway-role process (role `all` serves it at /mqtt on the HTTP port). */
    wsPort: c.MQTT_WS_PORT,
    maxPayloadBytes: c.MQTT_MAX_PAYLOAD_BYTES,
    authFailuresPerMinute: c.AUTH_FAILURES_PER_MINUTE,
    /** Events (devices/{MAC}/events) one device may publish a minute (a burst of as many); more are dropped. */
    eventsPerMinute: c.DEVICE_EVENTS_PER_MINUTE,
  },
  databaseUrl: c.DATABASE_URL,
  databasePoolSize: c.DATABASE_POOL_SIZE,
  /** How long a call waits for a connection, and for a query's answer, before it fails (503 in the API). */
  databasePolicy: { connectTimeoutMs: c.DATABASE_CONNECT_TIMEOUT_MS, queryTimeoutMs: c.DATABASE_QUERY_TIMEOUT_MS },
  dataDir: c.DATA_DIR,
  redis: { url: c.REDIS_URL ?? 'redis://127.0.0.1:6379', explicit: c.REDIS_URL !== undefined },
  deviceFactorySecret: c.DEVICE_FACTORY_SECRET,
  adminToken: c.ADMIN_TOKEN,
  logLevel: c.LOG_LEVEL,
  presenceFlushMs: c.PRESENCE_FLUSH_MS,
  shutdownGraceMs: c.SHUTDOWN_GRACE_MS,
  jobs: { ackTimeoutMs: c.JOB_ACK_TIMEOUT_MS, inProgressTimeoutMs: c.JOB_IN_PROGRESS_TIMEOUT_MS, maxAttempts: c.JOB_MAX_ATTEMPTS, concurrency: c.JOB_WORKER_CONCURRENCY },
  /** Opening a door from the cloud: how long it stays deliverable, and how long the request waits for the device. */
  doors: { openExpirySeconds: c.OPEN_DOOR_EXPIRY_SECONDS, openWaitMs: c.OPEN_DOOR_WAIT_MS },
  /** Events that leave the cloud: presence without flapping, webhooks (their reach and retries), the stream's window. */
  events: {
    presence: {
      graceMs: c.PRESENCE_OFFLINE_GRACE_SECONDS * 1000,
      flapCount: c.PRESENCE_FLAP_COUNT,
      flapWindowMs: c.PRESENCE_FLAP_MINUTES * 60_000,
      outageMinDevices: c.SITE_OUTAGE_MIN_DEVICES,
      outageShare: c.SITE_OUTAGE_SHARE,
      outageWindowMs: 30_000,
    },
    webhooks: { timeoutMs: c.WEBHOOK_TIMEOUT_MS, retryBaseMs: c.WEBHOOK_RETRY_BASE_MS, retryMs: c.WEBHOOK_RETRY_HOURS * 3600_000, concurrency: c.WEBHOOK_CONCURRENCY, endpointConcurrency: c.WEBHOOK_ENDPOINT_CONCURRENCY, allowedNetworks: c.WEBHOOK_ALLOWED_NETWORKS ?? [] },
    retentionMs: c.EVENT_RETENTION_HOURS * 3600_000,
  },
  queues: {
    /** Redis keys are `{prefix}:{deployment id}:…`: the deployment id comes from the database. */
    prefix: c.QUEUE_PREFIX,
    /** How long a request waits for Redis to take new jobs before answering 503. */
    timeoutMs: c.QUEUE_TIMEOUT_MS,
    /** How often PostgreSQL and Redis are reconciled. */
    reconcileIntervalMs: c.RECONCILE_INTERVAL_MS,
  },
  firmware: { maxImageBytes: c.FIRMWARE_MAX_BYTES, maxDownloads: c.FIRMWARE_MAX_DOWNLOADS },
  /** The address devices use for HTTP (firmware downloads); derived from HTTP_HOST and the port when unset. */
  publicUrl: c.PUBLIC_URL?.replace(/\/+$/, ''),
  sip: {
    mode: sipMode(c.SIP_SERVER),
    /** The external server's host (mode `external`). */
    server: c.SIP_SERVER && c.SIP_SERVER !== 'off' ? c.SIP_SERVER : null,
    listenHost: c.SIP_HOST,
    /** What stations are told to reach; derived from PUBLIC_URL (or the external server) when unset. */
    publicHost: c.SIP_PUBLIC_HOST,
    /** SIP domain and digest realm; the public host when unset. */
    domain: c.SIP_DOMAIN,
    ports: { udp: c.SIP_UDP_PORT ?? 5060, tcp: c.SIP_TCP_PORT ?? 5060, tls: c.SIP_TLS_PORT ?? 5061, ws: c.SIP_WS_PORT ?? 5066, wss: c.SIP_WSS_PORT ?? 7443 },
    /** False: the defaults were assumed, and a port taken on this machine falls back to a free one. */
    portsExplicit: [c.SIP_UDP_PORT, c.SIP_TCP_PORT, c.SIP_TLS_PORT, c.SIP_WS_PORT, c.SIP_WSS_PORT].some((p) => p !== undefined),
    backendToken: c.SIP_BACKEND_TOKEN,
    /** Where Kamailio reaches the back end (/internal/sip): never the public HTTP port; port 0: a free one. */
    backend: { host: c.SIP_BACKEND_HOST, port: c.SIP_BACKEND_PORT ?? 0 },
    authFailures: c.SIP_AUTH_FAILURES,
    authBlockSeconds: c.SIP_AUTH_BLOCK_SECONDS,
    ringTimeoutSeconds: c.SIP_RING_TIMEOUT_SECONDS,
    workers: c.SIP_WORKERS,
    maxConnections: c.SIP_MAX_CONNECTIONS,
  },
  /** Uploaded spreadsheets (resident templates, MAC lists): read in worker threads within these bounds. */
  spreadsheets: {
    maxUnzippedBytes: c.SPREADSHEET_MAX_UNZIPPED_BYTES,
    maxPartBytes: c.SPREADSHEET_MAX_PART_BYTES,
    maxCells: c.SPREADSHEET_MAX_CELLS,
    workerMemoryMb: c.SPREADSHEET_WORKER_MEMORY_MB,
    deadlineMs: c.SPREADSHEET_DEADLINE_MS,
    workers: c.SPREADSHEET_WORKERS,
  },
}));

export type Config = z.output<typeof configSchema>;
export type Role = Config['role'];
export type SipConfig = Config['sip'];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = configSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
