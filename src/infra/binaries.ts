import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** An installed program the service may start as a child (redis-server, kamailio): on PATH or where Debian puts it. */
export function findBinary(name: string, pathEnv: string | undefined): string | null {
  for (const dir of (pathEnv ?? '').split(delimiter).concat(['/usr/bin', '/usr/local/bin', '/usr/sbin', '/usr/local/sbin'])) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      /* not here */
    }
  }
  return null;
}
