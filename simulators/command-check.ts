import type { DeviceCommand } from '../src/provisioning/channel.js';

// What a device refuses before doing anything (docs/device-protocol.md, "Commands a device cannot carry
// out"): it answers `failed` with one of these codes and changes nothing.

const commandKinds = ['provision', 'autop', 'connect-type', 'autop-once', 'reboot', 'reset', 'upgrade', 'open-door'] as const;

export interface Refusal {
  code: 'unknown_kind' | 'invalid_params' | 'wrong_model';
  message: string;
}

const text = (v: unknown) => typeof v === 'string' && v !== '';

/** Why the device at `model` cannot carry out `command`; null when it can. */
export function refusal(command: Pick<DeviceCommand, 'kind' | 'params'>, model: string): Refusal | null {
  const p = (command.params ?? {}) as Record<string, unknown>;
  if (!(commandKinds as readonly string[]).includes(command.kind)) return { code: 'unknown_kind', message: `this firmware does not know the command kind ${String(command.kind).slice(0, 64)}` };
  if (command.kind === 'reset' && p.mode !== 'factory' && p.mode !== 'config') return { code: 'invalid_params', message: `unknown reset mode ${String(p.mode).slice(0, 64)}` };
  if (command.kind === 'connect-type' && !['udp', 'tcp', 'tls'].includes(p.connectType as string)) return { code: 'invalid_params', message: `unknown connect type ${String(p.connectType).slice(0, 64)}` };
  if (command.kind === 'upgrade') {
    if (!text(p.url) || !text(p.version) || !text(p.sha256) || !Number.isInteger(p.size)) return { code: 'invalid_params', message: 'an upgrade needs url, version, sha256 and size' };
    // Model names compare without regard to case, as the cloud's firmware list does (r29 is R29).
    if (String(p.model).toUpperCase() !== model.trim().toUpperCase()) return { code: 'wrong_model', message: `the image is for ${String(p.model).slice(0, 64)}, this device is ${model}` };
  }
  if (command.kind === 'open-door' && !(Number.isInteger(p.relay) && (p.relay as number) >= 1 && (p.relay as number) <= 8)) return { code: 'invalid_params', message: 'open-door needs a relay from 1 to 8' };
  if (command.kind === 'autop-once' && !Array.isArray(p.lines) && !p.linesDocument) return { code: 'invalid_params', message: 'one-time Autop needs lines or linesDocument' };
  return null;
}
