// Regenerates firmware-fixtures/: small deterministic images for real model names, and their manifest.
// npm run fixtures:firmware   (the files are committed; this documents how they were made)
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { firmwareImage } from '../simulators/firmware-image.js';

const dir = join(import.meta.dirname, '..', 'firmware-fixtures');
const fixtures = [
  { model: 'R29', version: '29.30.10.200', changelog: 'Door phone R29: SIP over TLS by default; relay timing fix' },
  { model: 'S532', version: '532.30.10.5', changelog: 'Indoor monitor S532: Autop over HTTPS, new call log' },
  { model: 'X916', version: '916.30.10.110', changelog: 'Door phone X916: face recognition model update' },
  { model: 'C313', version: '113.30.10.80', changelog: 'Indoor monitor C313: RTSP camera preview fix' },
  { model: 'E18', version: '18.30.10.300', changelog: 'Door phone E18: NFC card reading fix' },
  { model: 'IXGW-TGW', version: '2.10', changelog: 'Aiphone IXGW-TGW gateway adaptor: station address book sync' },
];

const manifest = fixtures.map((f) => {
  const file = `${f.model.toLowerCase()}-${f.version}.bin`;
  const image = firmwareImage(f.model, f.version, 48 * 1024);
  writeFileSync(join(dir, file), image);
  return { ...f, file, size: image.length, sha256: createHash('sha256').update(image).digest('hex') };
});
writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(`wrote ${manifest.length} images and manifest.json to ${dir}`);
