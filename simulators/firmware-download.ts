import { createHash } from 'node:crypto';
import http from 'node:http';
import type { DeviceBehaviour, DownloadRequest } from './device-types.js';

// A firmware download as a device does it (docs/device-protocol.md, "Firmware upgrades"): HTTP Basic
// with the device's credentials, Range resumption after a cut, If-Range, Retry-After when the server is busy.

export interface ImageDownload {
  jobId: string;
  url: string;
  size: number;
  /** The Authorization header: Basic with the MAC and the device key. */
  auth: string;
  localAddress?: string;
  behaviour: DeviceBehaviour;
  /** Every HTTP request is recorded here. */
  downloads: DownloadRequest[];
  stopped: () => boolean;
  report: (status: Record<string, unknown>) => Promise<void>;
}

export async function downloadImage({ jobId, url, size, auth, localAddress, behaviour: b, downloads, stopped, report }: ImageDownload) {
  const step = b.progressStepPercent ?? 25;
  let hash = createHash('sha256');
  let received = 0;
  let etag: string | undefined;
  let dropped = false;
  let reported = 0;
  for (let attempt = 0; received < size || size === 0; attempt++) {
    if (attempt >= 200 || stopped()) return { ok: false as const, code: 'download_incomplete', message: `stopped after ${received} of ${size} bytes` };
    const range = received > 0 ? `bytes=${received}-` : null;
    const headers: Record<string, string> = { authorization: auth, ...(range ? { range } : {}), ...(range && etag ? { 'if-range': etag } : {}) };
    let res: http.IncomingMessage;
    try {
      res = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get(url, { headers, agent: false, ...(localAddress ? { localAddress } : {}) }, resolve).on('error', reject),
      );
    } catch {
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
      continue;
    }
    const status = res.statusCode ?? 0;
    const record: DownloadRequest = { jobId, status, range, bytes: 0 };
    downloads.push(record);
    if (status === 503) {
      res.resume();
      await new Promise((r) => setTimeout(r, Number(res.headers['retry-after'] ?? 2) * 1000));
      continue;
    }
    if (status !== 200 && status !== 206) {
      res.resume();
      return { ok: false as const, code: 'download_failed', message: `the server answered ${status}` };
    }
    if (status === 200 && received > 0) {
      hash = createHash('sha256'); // the image changed (If-Range): start over
      received = 0;
    }
    etag = typeof res.headers.etag === 'string' ? res.headers.etag : undefined;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        hash.update(chunk);
        received += chunk.length;
        record.bytes += chunk.length;
        const percent = Math.floor((received / size) * 100);
        if (percent >= reported + step && percent < 100) {
          reported = percent - (percent % step);
          void report({ state: 'in-progress', stage: 'downloading', progress: reported });
          if (b.downloadPauseMs) await new Promise((r) => setTimeout(r, b.downloadPauseMs));
        }
        if (!dropped && b.dropDownloadAt !== undefined && received >= b.dropDownloadAt * size) {
          dropped = true;
          res.destroy(); // the connection drops mid-download
          break;
        }
      }
    } catch {
      // cut off: the next request resumes from what arrived
    }
    if (size === 0) break;
  }
  return { ok: true as const, sha256: hash.digest('hex') };
}

