// Loads firmware-fixtures/ into a running service's catalogue through the API (the demo's firmware list).
// npm run seed -- --url http://127.0.0.1:8080 --token <distributor token>   (or API_URL / API_TOKEN)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

export interface FixtureEntry {
  model: string;
  version: string;
  changelog: string;
  file: string;
  size: number;
  sha256: string;
}

export const fixturesDir = join(import.meta.dirname, '..', 'firmware-fixtures');
export const fixtureManifest = (): FixtureEntry[] => JSON.parse(readFileSync(join(fixturesDir, 'manifest.json'), 'utf8')) as FixtureEntry[];

/** Uploads each fixture; one already in the catalogue (409) is left as it is. */
export async function seedFirmware(url: string, token: string, log: (line: string) => void = console.log): Promise<{ uploaded: number; present: number }> {
  let uploaded = 0;
  let present = 0;
  for (const entry of fixtureManifest()) {
    const form = new FormData();
    form.set('model', entry.model);
    form.set('version', entry.version);
    form.set('changelog', entry.changelog);
    form.set('file', new Blob([readFileSync(join(fixturesDir, entry.file))]), entry.file);
    const res = await fetch(`${url}/api/v1/firmware`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: form });
    const body = (await res.json()) as { sha256?: string; error?: { message: string } };
    if (res.status === 201) {
      if (body.sha256 !== entry.sha256) throw new Error(`${entry.file}: the service hashed it to ${body.sha256}, the manifest says ${entry.sha256}`);
      uploaded++;
      log(`uploaded ${entry.model} ${entry.version}`);
    } else if (res.status === 409) {
      present++;
      log(`already there: ${entry.model} ${entry.version}`);
    } else {
      throw new Error(`${entry.file}: ${res.status} ${body.error?.message ?? ''}`);
    }
  }
  return { uploaded, present };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const { values } = parseArgs({ options: { url: { type: 'string', default: process.env.API_URL ?? 'http://127.0.0.1:8080' }, token: { type: 'string', default: process.env.API_TOKEN } } });
  if (!values.token) {
    console.error('give --token (a distributor API token; the service prints one on its first start) or API_TOKEN');
    process.exit(2);
  }
  const result = await seedFirmware(values.url!.replace(/\/+$/, ''), values.token);
  console.log(`${result.uploaded} uploaded, ${result.present} already in the catalogue`);
}
