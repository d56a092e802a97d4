import { firmwareImage } from '../../simulators/firmware-image.js';
import type { SimulatedDevice, SimulatedDeviceOptions } from '../../simulators/device-simulator.js';
import { ADMIN_TOKEN, once, waitFor, type ApiResponse, type TestService } from './service.js';

/**
 * Adds a device, connects its simulator and waits until the service has recorded the model and firmware
 * of its hello (upgrades check both); `offline` stops it again afterwards.
 */
export async function knownDevice(svc: TestService, token: string, mac: string, opts: Partial<SimulatedDeviceOptions> & { offline?: boolean } = {}): Promise<SimulatedDevice> {
  const { offline, ...deviceOptions } = opts;
  await svc.addDevice(token, mac);
  const device = svc.device(mac, deviceOptions);
  device.start();
  await once(device, 'online');
  const firmware = deviceOptions.firmware ?? device.firmware;
  await waitFor(() => svc.api('GET', `/api/v1/devices/${mac}`, { token }).then((r) => r.body.firmware), (f) => f === firmware);
  if (offline) await device.stop(false);
  return device;
}

export interface Upload {
  model?: string;
  version?: string;
  changelog?: string;
  image?: Buffer;
  fileName?: string;
  token?: string;
  /** Extra or replacement parts. */
  fields?: Record<string, string>;
}

/** Uploads a firmware image as a distributor would, through multipart/form-data. */
export async function uploadFirmware(svc: TestService, u: Upload = {}): Promise<ApiResponse> {
  const model = u.model ?? 'R29';
  const version = u.version ?? '29.30.10.200';
  const form = new FormData();
  form.set('model', model);
  form.set('version', version);
  form.set('changelog', u.changelog ?? `${model} ${version}`);
  for (const [k, v] of Object.entries(u.fields ?? {})) form.set(k, v);
  const image = u.image ?? firmwareImage(model, version, 64 * 1024);
  form.set('file', new Blob([image]), u.fileName ?? `${model}-${version}.bin`);
  const res = await fetch(`${svc.httpUrl}/api/v1/firmware`, { method: 'POST', headers: { authorization: `Bearer ${u.token ?? ADMIN_TOKEN}` }, body: form });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: body as any, headers: res.headers };
}
