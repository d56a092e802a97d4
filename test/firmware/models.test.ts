import t from 'tap';
import { versionMismatch, versionPrefixOf } from '../../src/firmware/models.js';

t.test("a version's first part names the model, as in the vendor's firmware list", async (t) => {
  t.equal(versionMismatch('R29', '29.30.2.805'), null);
  t.equal(versionMismatch('x916', '916.30.101.303'), null, 'model names are case-insensitive');
  t.equal(versionMismatch('C313', '113.30.6.89'), null, 'C313 runs 113.x');
  t.equal(versionMismatch('R27', '227.31.1.131'), null, 'R27 runs 227.x');
  t.equal(versionMismatch('IXGW-TGW', '2.10'), null);
  t.match(versionMismatch('R29', '916.30.101.303'), /not for model R29 \(its versions start with 29\.\)/);
  t.match(versionMismatch('R29', '29'), /dotted form/);
  t.match(versionMismatch('R29', '29.30.x.1'), /dotted form/);
  t.match(versionMismatch('GATEWAY', '1.0'), /no known version prefix/);
  t.equal(versionPrefixOf('E18'), '18');
});
