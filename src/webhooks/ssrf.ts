import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

// Where webhooks may go (issue 19): never to loopback, link-local, private, shared or reserved addresses
// unless the operator allows a network (WEBHOOK_ALLOWED_NETWORKS). Checked on the address actually
// connected to (the lookup of every request), so a name that resolves inward later is refused too.

const blocked = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24],
  ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) blocked.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32], ['64:ff9b::', 96], ['100::', 64]] as const) blocked.addSubnet(net, prefix, 'ipv6');

export class AddressPolicy {
  private readonly allowed = new BlockList();

  constructor(allowedNetworks: string[]) {
    for (const n of allowedNetworks) {
      const [address, prefix] = n.split('/');
      const family = isIP(address!) === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.allowed.addAddress(address!, family);
      else this.allowed.addSubnet(address!, Number(prefix), family);
    }
  }

  /** Whether a webhook may connect to this address. */
  allows(address: string): boolean {
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    const ip = v4 ?? address;
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowed.check(ip, family)) return true;
    return !blocked.check(ip, family);
  }

  /** A `lookup` for http.request: resolves, then refuses an address the policy does not allow. */
  lookup = (hostname: string, options: object, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const list = addresses as LookupAddress[];
      const refused = list.find((a) => !this.allows(a.address));
      if (refused || !list.length) {
        const e = Object.assign(new Error(`webhook address ${refused?.address ?? hostname} is not allowed (loopback, link-local or private; WEBHOOK_ALLOWED_NETWORKS)`), { code: 'EADDRNOTALLOWED' });
        return callback(e, '');
      }
      if ((options as { all?: boolean }).all) return callback(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}
