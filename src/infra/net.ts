import dgram from 'node:dgram';
import net from 'node:net';

/** A port that was free a moment ago on 127.0.0.1 (for child processes that must be told their port). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

/** A UDP port that was free a moment ago on `host` (another process may still take it first: callers retry). */
export const freeUdpPort = (host = '127.0.0.1') =>
  new Promise<number>((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** The address to reach a listener at on this machine: a wildcard listen address means loopback. */
export const reachableHost = (listenHost: string) => (['0.0.0.0', '::', ''].includes(listenHost) ? '127.0.0.1' : listenHost);

/** Whether a TCP listener answers at host:port within `timeoutMs`. */
export const canConnect = (host: string, port: number, timeoutMs = 1500) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
