import t from 'tap';
import { sourceKey } from '../../src/infra/connection-caps.js';

// What one source is for the per-address connection caps.
t.test('a source is an IPv4 address or an IPv6 /64', async (t) => {
  t.equal(sourceKey('198.51.100.7'), '198.51.100.7');
  t.equal(sourceKey('::ffff:198.51.100.7'), '198.51.100.7', 'an IPv4 client of a dual-stack listener is its IPv4 address');
  t.equal(sourceKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.equal(sourceKey('2001:db8:1:2:ffff:eeee:dddd:cccc'), '2001:db8:1:2::/64', 'every address of a /64 is one source');
  t.equal(sourceKey('2001:0db8:0001:0002::'), '2001:db8:1:2::/64', 'however it is written');
  t.not(sourceKey('2001:db8:1:3::1'), sourceKey('2001:db8:1:2::1'), 'another /64 is another source');
  t.equal(sourceKey('::1'), '0:0:0:0::/64');
  t.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
});
