import { z } from 'zod';
import { createDeviceBody, deviceTypeCodes, type DeviceTypeCode } from '../devices/schemas.js';
import { parseMac } from '../mac-library/mac.js';
import type { SheetRow } from '../shared/csv.js';
import { nameText } from '../shared/text.js';
import { apartmentNumberSchema, floorSchema } from './schemas.js';

// The portal's resident template (seed 004 "Add Community Residents Using a Template", seed 002 §6.1.2):
// one row per resident (or per apartment without residents), apartments and buildings made as named.

/** The columns, in the order the export and the blank template write them: the portal's, then the apartment's floor. */
export const TEMPLATE_COLUMNS = [
  'Building',
  'Accessible Floors',
  'Apt',
  'AptName',
  'Device',
  'FirstName',
  'LastName',
  'Email',
  'MobileNumber',
  'TelephoneCallingCode',
  '1stPhone',
  '2ndPhone',
  '3rdPhone',
  'Web Relay ID',
  'Floor',
] as const;
type Column = (typeof TEMPLATE_COLUMNS)[number];

export const SAMPLE_ROW = ['Seaside Apartments', '5', '201', 'The Green', 'Kitchen,2,0C1105000201', 'Lily', 'Green', 'lily@example.com', '1701234567', '+49', '0301234567', '', '', '0', '2'];

/** Header spellings seen in the portal's templates (including its typos), compared without case or spaces. */
const aliases: Record<string, Column> = {
  building: 'Building',
  accessiblefloors: 'Accessible Floors',
  apt: 'Apt',
  aptname: 'AptName',
  device: 'Device',
  firstname: 'FirstName',
  lastname: 'LastName',
  email: 'Email',
  enail: 'Email',
  mobilenumber: 'MobileNumber',
  mobilenumbe: 'MobileNumber',
  telephonecallingcode: 'TelephoneCallingCode',
  '1stphone': '1stPhone',
  phone1: '1stPhone',
  '2ndphone': '2ndPhone',
  phone2: '2ndPhone',
  '3rdphone': '3rdPhone',
  phone3: '3rdPhone',
  webrelayid: 'Web Relay ID',
  floor: 'Floor',
  aptfloor: 'Floor',
  apartmentfloor: 'Floor',
};
const headerKey = (h: string) => h.toLowerCase().replace(/[^a-z0-9]/g, '');

export interface TemplateDevice {
  name: string;
  type: DeviceTypeCode;
  mac: string;
}

export interface TemplateRow {
  line: number;
  building: string;
  apartment: { number: string; name: string | null; webRelayId: number | null; floor: string | null };
  accessibleFloors: string[];
  devices: TemplateDevice[];
  resident: { firstName: string; lastName: string; email: string | null; mobile: { countryCode: string; number: string } | null; landlines: string[] } | null;
}

export interface InvalidCell {
  line: number;
  column: string | null;
  value: string;
  reason: string;
}

// Names refuse a formula-like start (=, +, -, @), as the API does: the cell's line and column say so.
const buildingName = nameText(128, 1);
const personName = nameText(64, 1).refine((v) => Buffer.byteLength(v) <= 64, 'at most 64 bytes');
const email = z.email().max(254);
const digits = z.string().regex(/^[0-9]{3,15}$/, '3 to 15 digits');
const callingCode = z.string().regex(/^\+?[0-9]{1,4}$/, 'a telephone calling code such as +49');
const aptName = nameText(128);

/**
 * Reads the template's rows: every cell checked, every fault listed with its line, column and reason.
 * Columns it does not model (CallType, Analog Handset, others) are named in `ignoredColumns`.
 */
export function parseTemplate(sheet: SheetRow[]): { rows: TemplateRow[]; invalid: InvalidCell[]; ignoredColumns: string[] } {
  const [header, ...data] = sheet;
  if (!header) return { rows: [], invalid: [{ line: 1, column: null, value: '', reason: 'the file is empty; the first row names the columns' }], ignoredColumns: [] };
  const index = new Map<Column, number>();
  const ignoredColumns: string[] = [];
  header.cells.forEach((h, i) => {
    const column = aliases[headerKey(h)];
    if (column && !index.has(column)) index.set(column, i);
    else if (h) ignoredColumns.push(h);
  });
  const missing = (['Building', 'Apt'] as const).filter((c) => !index.has(c));
  if (missing.length) {
    return { rows: [], invalid: missing.map((c) => ({ line: header.line, column: c, value: '', reason: `the header has no ${c} column` })), ignoredColumns };
  }

  const rows: TemplateRow[] = [];
  const invalid: InvalidCell[] = [];
  for (const { line, cells } of data) {
    const get = (c: Column) => (index.has(c) ? (cells[index.get(c)!] ?? '').trim() : '');
    const faults: InvalidCell[] = [];
    const check = <T>(column: Column, schema: z.ZodType<T>, value: string): T | undefined => {
      const r = schema.safeParse(value);
      if (r.success) return r.data;
      faults.push({ line, column, value: value.slice(0, 200), reason: r.error.issues[0]?.message ?? 'invalid' });
      return undefined;
    };
    const building = check('Building', buildingName, get('Building'));
    const number = check('Apt', apartmentNumberSchema, get('Apt'));
    const name = get('AptName') ? check('AptName', aptName, get('AptName')) : null;
    const relay = get('Web Relay ID');
    const webRelayId = relay === '' ? null : check('Web Relay ID', z.coerce.number().int().min(0).max(10), relay);

    const floor = get('Floor') ? check('Floor', floorSchema, get('Floor')) : null;
    const floorsCell = get('Accessible Floors');
    let accessibleFloors: string[] = [];
    if (/^all( floors)?$/i.test(floorsCell)) accessibleFloors = ['all'];
    else if (floorsCell) {
      const floors = floorsCell.split(/[\s,;]+/).filter(Boolean);
      if (floors.every((f) => floorSchema.safeParse(f).success)) accessibleFloors = [...new Set(floors)];
      else faults.push({ line, column: 'Accessible Floors', value: floorsCell, reason: 'floors: -10 to 128 or G0–G2, separated by commas, or All' });
    }

    const devices: TemplateDevice[] = [];
    for (const part of get('Device').split(';').map((p) => p.trim()).filter(Boolean)) {
      const [devName = '', type = '', macText = ''] = part.split(',').map((p) => p.trim());
      const mac = parseMac(macText);
      const named = createDeviceBody.shape.name.safeParse(devName);
      if (!devName || !(deviceTypeCodes as readonly string[]).includes(type) || !('mac' in mac)) {
        faults.push({ line, column: 'Device', value: part, reason: 'a device is "Name,Type,MAC" (type 0, 1, 2, 3 or 50); several are separated by ";"' });
      } else if (!named.success) faults.push({ line, column: 'Device', value: part, reason: `the device's name: ${named.error.issues[0]?.message ?? 'invalid'}` });
      else devices.push({ name: named.data, type: type as DeviceTypeCode, mac: mac.mac });
    }

    const first = get('FirstName');
    const last = get('LastName');
    let resident: TemplateRow['resident'] = null;
    if (first || last) {
      const firstName = check('FirstName', personName, first);
      const lastName = check('LastName', personName, last);
      const mail = get('Email') ? check('Email', email, get('Email')) : null;
      const mobileNumber = get('MobileNumber') ? check('MobileNumber', digits, get('MobileNumber')) : null;
      const code = get('TelephoneCallingCode') ? check('TelephoneCallingCode', callingCode, get('TelephoneCallingCode')) : null;
      if (mobileNumber && !code && get('TelephoneCallingCode') === '') faults.push({ line, column: 'TelephoneCallingCode', value: '', reason: 'a mobile number needs its telephone calling code' });
      const landlines = (['1stPhone', '2ndPhone', '3rdPhone'] as const).map((c) => (get(c) ? check(c, digits, get(c)) : null)).filter((v): v is string => typeof v === 'string');
      if (firstName && lastName) {
        resident = {
          firstName,
          lastName,
          email: mail ?? null,
          mobile: mobileNumber && code ? { countryCode: code.startsWith('+') ? code : `+${code}`, number: mobileNumber } : null,
          landlines,
        };
      }
    } else if (['Email', 'MobileNumber', '1stPhone', '2ndPhone', '3rdPhone'].some((c) => get(c as Column))) {
      faults.push({ line, column: 'FirstName', value: '', reason: "a resident's details need the resident's first and last name" });
    }

    if (faults.length) invalid.push(...faults);
    else rows.push({ line, building: building!, apartment: { number: number!, name: name ?? null, webRelayId: webRelayId ?? null, floor: floor ?? null }, accessibleFloors, devices, resident });
  }
  return { rows, invalid, ignoredColumns };
}

/** An export's row, in TEMPLATE_COLUMNS order. */
export function templateRow(r: {
  building: string;
  accessibleFloors: string[];
  apartment: string;
  apartmentName: string | null;
  apartmentFloor: string | null;
  devices: TemplateDevice[];
  resident: { firstName: string; lastName: string; email: string | null; mobile: { countryCode: string; number: string } | null; landlines: string[] } | null;
  webRelayId: number;
}): string[] {
  const floors = r.accessibleFloors.includes('all') ? 'All' : r.accessibleFloors.join(',');
  const p = r.resident;
  return [
    r.building,
    floors,
    r.apartment,
    r.apartmentName ?? '',
    r.devices.map((d) => `${d.name.replace(/[,;]/g, ' ')},${d.type},${d.mac}`).join(';'),
    p?.firstName ?? '',
    p?.lastName ?? '',
    p?.email ?? '',
    p?.mobile?.number ?? '',
    p?.mobile?.countryCode ?? '',
    p?.landlines[0] ?? '',
    p?.landlines[1] ?? '',
    p?.landlines[2] ?? '',
    String(r.webRelayId),
    r.apartmentFloor ?? '',
  ];
}
