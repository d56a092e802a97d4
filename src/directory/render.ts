import { createHash } from 'node:crypto';
import { ACCESS_CONTROL, GUARD_PHONE, INDOOR_MONITOR, isDoorPhone, isEntrance } from '../devices/types.js';
import type { CallStep, ContactPreference, PhoneNumber } from './tables.js';

// Pure rendering of the directory into what each placed device needs: its contact list and the credentials
// it must accept. Deterministic (fixed key order, sorted lists), so a document's SHA-256 changes exactly
// when its content does, and a device is re-provisioned only then.

export interface SiteSnapshot {
  site: { id: string; name: string; timeZone: string; contactDisplay: 'first-last' | 'last-first'; pinMode: 'pin' | 'apt-pin' };
  buildings: { id: string; name: string; groundFloor: string | null; startFloor: string | null }[];
  apartments: { id: string; buildingId: string; number: string; name: string | null; floor: string | null; contactPreference: ContactPreference; webRelayId: number }[];
  residents: { id: string; apartmentId: string; role: 'main' | 'family'; firstName: string; lastName: string; mobile: PhoneNumber | null; landlines: string[]; accessibleFloors: string[]; createdAt: Date }[];
  credentials: { apartmentId: string; residentId: string; kind: 'pin' | 'card'; value: string; validFrom: Date | null; validUntil: Date | null }[];
  /** Devices placed in the site, with what the devices domain knows of them. */
  devices: { mac: string; type: string; name: string; sipNumber: string; location: string | null; buildingId: string | null; apartmentId: string | null }[];
}

export interface RenderedDocument {
  name: 'contacts' | 'credentials';
  body: Buffer;
  sha256: string;
}

export interface DeviceRender {
  mac: string;
  timeZone: string;
  documents: RenderedDocument[];
}

/** Device types that call apartments (a contact list of apartments). */
const callsApartments = isEntrance;
/** Device types that open doors by PIN or card (a credential list). */
const opensDoors = (type: string) => isDoorPhone(type) || type === ACCESS_CONTROL;
/** Device types an indoor monitor lists as its door phones. */
const entranceTypes = isEntrance;

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Floors in the lift's order: G0–G2 (ground floors) first, then -10 … 128. */
const floorRank = (f: string) => (f.startsWith('G') ? -100 + Number(f.slice(1)) : Number(f));
/**
 * The floors a resident's PIN or card calls the lift to (seed 004): the resident's accessible floors and
 * the apartment's own floor, or `["all"]` for All Floors.
 */
export function liftFloors(accessible: readonly string[], apartmentFloor: string | null): string[] {
  if (accessible.includes('all')) return ['all'];
  const floors = new Set(accessible);
  if (apartmentFloor !== null) floors.add(apartmentFloor);
  return [...floors].sort((a, b) => floorRank(a) - floorRank(b));
}
const iso = (d: Date | null) => d?.toISOString() ?? null;

const doc = (name: RenderedDocument['name'], content: unknown): RenderedDocument => {
  const body = Buffer.from(JSON.stringify(content), 'utf8');
  return { name, body, sha256: createHash('sha256').update(body).digest('hex') };
};

/** Groups items by a key, keeping their order. */
function groupBy<T>(items: Iterable<T>, key: (item: T) => string | null): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === null) continue;
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** Answers `make(k)` once per key: devices of one scope (the public area, a building) share their lists. */
function once<T>(make: (key: string) => T): (key: string) => T {
  const made = new Map<string, T>();
  return (key) => {
    if (!made.has(key)) made.set(key, make(key));
    return made.get(key)!;
  };
}

type Device = SiteSnapshot['devices'][number];
type Apartment = SiteSnapshot['apartments'][number];

export function renderSite(s: SiteSnapshot): DeviceRender[] {
  const buildingName = new Map(s.buildings.map((b) => [b.id, b.name]));
  const buildingById = new Map(s.buildings.map((b) => [b.id, b]));
  const floorsOf = new Map(s.residents.map((r) => [r.id, r.accessibleFloors]));
  const apartmentById = new Map(s.apartments.map((a) => [a.id, a]));
  const apartmentOrder = (a: Apartment, b: Apartment) => byText(buildingName.get(a.buildingId) ?? '', buildingName.get(b.buildingId) ?? '') || byText(a.number, b.number);
  const ordered = [...s.apartments].sort(apartmentOrder);
  const apartmentsOf = groupBy(ordered, (a) => a.buildingId);
  const residentsOf = groupBy(
    [...s.residents].sort((a, b) => (a.role === b.role ? a.createdAt.getTime() - b.createdAt.getTime() || byText(a.id, b.id) : a.role === 'main' ? -1 : 1)),
    (r) => r.apartmentId,
  );
  const credentialsOf = groupBy([...s.credentials].sort((x, y) => byText(x.value, y.value)), (c) => c.apartmentId);
  const byMac = [...s.devices].sort((a, b) => byText(a.mac, b.mac));
  const monitorsOf = groupBy(byMac, (d) => (d.type === INDOOR_MONITOR ? d.apartmentId : null));
  const entrances = byMac.filter((d) => entranceTypes(d.type));
  const displayName = (r: { firstName: string; lastName: string }) => (s.site.contactDisplay === 'first-last' ? `${r.firstName} ${r.lastName}` : `${r.lastName} ${r.firstName}`);

  /** What a device serves: its apartment, its building's apartments, or (public area) the whole site's. */
  const scopeOf = (d: Device) => (d.apartmentId ? `apartment:${d.apartmentId}` : d.buildingId ? `building:${d.buildingId}` : 'site');
  const served = (scope: string): Apartment[] => {
    const [kind, id = ''] = scope.split(':');
    if (kind === 'apartment') return apartmentById.has(id) ? [apartmentById.get(id)!] : [];
    if (kind === 'building') return apartmentsOf.get(id) ?? [];
    return ordered;
  };

  const monitorTargets = (apartmentId: string) => (monitorsOf.get(apartmentId) ?? []).map((m) => ({ type: 'indoor-monitor', name: m.name, sipNumber: m.sipNumber }));
  const landlineTargets = (apartmentId: string) => {
    const numbers = new Set<string>();
    for (const r of residentsOf.get(apartmentId) ?? []) for (const n of r.landlines) numbers.add(n);
    return [...numbers].map((number) => ({ type: 'landline', number }));
  };
  // App accounts have no SIP identity yet (the calls issue allocates them): their step is listed, empty.
  const stepTargets = (step: CallStep, apartmentId: string) => (step === 'indoor-monitors' ? monitorTargets(apartmentId) : step === 'landlines' ? landlineTargets(apartmentId) : []);
  const call = (a: Apartment) =>
    a.contactPreference.mode === 'group'
      ? { mode: 'group', steps: [{ step: 'group', targets: monitorTargets(a.id) }] }
      : { mode: 'sequence', steps: a.contactPreference.steps.map((step) => ({ step, targets: stepTargets(step, a.id) })) };

  const apartmentContacts = once((scope) =>
    doc('contacts', {
      site: s.site.name,
      displayMode: s.site.contactDisplay,
      apartments: served(scope).map((a) => ({
        apartment: a.number,
        building: buildingName.get(a.buildingId) ?? null,
        name: a.name,
        floor: a.floor,
        webRelayId: a.webRelayId,
        residents: (residentsOf.get(a.id) ?? []).map(displayName),
        call: call(a),
      })),
    }),
  );

  /** An indoor monitor's door and guard phones: the public area's, its building's and its apartment's. */
  const entranceContacts = once((place) => {
    const [buildingId, apartmentId] = place.split('|').map((v) => v || null);
    return doc('contacts', {
      site: s.site.name,
      displayMode: s.site.contactDisplay,
      entrances: entrances
        .filter((e) => (!e.buildingId && !e.apartmentId) || (buildingId !== null && e.buildingId === buildingId && !e.apartmentId) || (apartmentId !== null && e.apartmentId === apartmentId))
        .map((e) => ({ name: e.name, location: e.location, sipNumber: e.sipNumber, type: e.type === GUARD_PHONE ? 'guard-phone' : 'door-phone' })),
    });
  });
  const monitorPlace = (d: Device) => `${d.buildingId ?? (d.apartmentId ? apartmentById.get(d.apartmentId)?.buildingId : null) ?? ''}|${d.apartmentId ?? ''}`;

  const accessList = once((scope) => {
    const pins: unknown[] = [];
    const cards: unknown[] = [];
    const lifts = new Set<string>();
    for (const a of served(scope)) {
      lifts.add(a.buildingId);
      for (const c of credentialsOf.get(a.id) ?? []) {
        const entry = { apartment: a.number, building: buildingName.get(a.buildingId) ?? null, validFrom: iso(c.validFrom), validUntil: iso(c.validUntil), floors: liftFloors(floorsOf.get(c.residentId) ?? [], a.floor) };
        if (c.kind === 'pin') pins.push({ code: c.value, ...entry });
        else cards.push({ number: c.value, ...entry });
      }
    }
    // The lift's frame of each building served: where its floors start (null: as set on the device).
    const lift = [...lifts]
      .map((id) => buildingById.get(id))
      .filter((b) => b !== undefined)
      .sort((x, y) => byText(x.name, y.name))
      .map((b) => ({ building: b.name, groundFloor: b.groundFloor, startFloor: b.startFloor }));
    return doc('credentials', { pinMode: s.site.pinMode, pins, cards, lift });
  });

  return s.devices.map((d) => {
    const documents: RenderedDocument[] = [];
    if (callsApartments(d.type)) documents.push(apartmentContacts(scopeOf(d)));
    else if (d.type === INDOOR_MONITOR) documents.push(entranceContacts(monitorPlace(d)));
    if (opensDoors(d.type)) documents.push(accessList(scopeOf(d)));
    return { mac: d.mac, timeZone: s.site.timeZone, documents };
  });
}
