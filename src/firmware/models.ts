// Vendor firmware versions are dotted numbers whose first part names the model (R29 runs 29.30.2.805,
// C313 runs 113.30.6.89: seeds 002 §10.1). Models whose prefix is not their digits are listed here.
const KNOWN_PREFIXES: Record<string, string> = {
  R27: '227',
  C313: '113',
  C315: '115',
  R49G: '149',
  A05: '105',
  'IXGW-TGW': '2',
  'IXGW-GW': '2',
};

export const VERSION_PATTERN = /^\d{1,6}(\.\d{1,6}){1,4}$/;

/** Model names are compared in upper case ("x916" and "X916" are one model). */
export const normalizeModel = (model: string) => model.trim().toUpperCase();

/** The first version part that identifies the model, or null for a model we cannot tell. */
export function versionPrefixOf(model: string): string | null {
  const m = normalizeModel(model);
  if (KNOWN_PREFIXES[m]) return KNOWN_PREFIXES[m]!;
  const digits = m.replace(/\D/g, '');
  return digits ? String(Number(digits)) : null;
}

/** Why this version cannot belong to this model, or null when it can. */
export function versionMismatch(model: string, version: string): string | null {
  if (!VERSION_PATTERN.test(version)) return `version ${version} is not in the vendor's dotted form (e.g. 29.30.2.805)`;
  const prefix = versionPrefixOf(model);
  if (prefix === null) return `model ${model} has no known version prefix`;
  const first = String(Number(version.split('.')[0]));
  if (first !== prefix) return `version ${version} is not for model ${normalizeModel(model)} (its versions start with ${prefix}.)`;
  return null;
}
