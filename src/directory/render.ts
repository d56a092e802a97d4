import { createHash } from 'node:crypto';
import type { CallStep, ContactPreference, PhoneNumber } from './tables.js';

// Pure rendering of the directory into what each placed device needs: its contact list and the credentials
// it must accept. Deterministic (fixed key order, sorted lists), so a document's SHA-256 changes exactly
// when its content does, and a device is re-provisioned only then.

export interface SiteSnapshot {
  site: { id: string; name: string; timeZone: string; contactDisplay: 'first-last' | 'last-first'; pinMode: 'pin' | 'apt-pin' };
  buildings: { id: string; name: string }[];
  apartments: { id: string; buildingId: string; number: string; name: string | null; floor: string | null; contactPreference: ContactPreference; webRelayId: number }[];
  residents: { id: string; apartmentId: string; role: 'main' | 'family'; firstName: string; lastName: string; mobile: PhoneNumber | null; landlines: string[]; createdAt: Date }[];
  credentials: { apartmentId: string; kind: 'pin' | 'card'; value: string; validFrom: Date | null; validUntil: Date | null }[];
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

const DOOR_PHONES = new Set(['0', '1']);
const GUARD_PHONE = '3';
const INDOOR_MONITOR = '2';
const ACCESS_CONTROL = '50';

/** Device types that call apartments (a contact list of apartments). */
const callsApartments = (type: string) => DOOR_PHONES.has(type) || type === GUARD_PHONE;
/** Device types that open doors by PIN or card (a credential list). */
const opensDoors = (type: string) => DOOR_PHONES.has(type) || type === ACCESS_CONTROL;
/** Device types an indoor monitor lists as its door phones. */
const entranceTypes = (type: string) => DOOR_PHONES.has(type) || type === GUARD_PHONE;

const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
const iso = (d: Date | null) => d?.toISOString() ?? null;

const doc = (name: RenderedDocument['name'], content: unknown): RenderedDocument => {
  const body = Buffer.from(JSON.stringify(content), 'utf8');
  return { name, body, sha256: createHash('sha256').update(body).digest('hex') };
};

export function renderSite(s: SiteSnapshot): DeviceRender[] {
  const buildingName = new Map(s.buildings.map((b) => [b.id, b.name]));
  const apartmentsOf = new Map<string, SiteSnapshot['apartments']>();
  for (const a of s.apartments) apartmentsOf.set(a.buildingId, [...(apartmentsOf.get(a.buildingId) ?? []), a]);
  const residentsOf = new Map<string, SiteSnapshot['residents']>();
  for (const r of [...s.residents].sort((a, b) => (a.role === b.role ? a.createdAt.getTime() - b.createdAt.getTime() || byText(a.id, b.id) : a.role === 'main' ? -1 : 1))) {
    residentsOf.set(r.apartmentId, [...(residentsOf.get(r.apartmentId) ?? []), r]);
  }
  const credentialsOf = new Map<string, SiteSnapshot['credentials']>();
  for (const c of s.credentials) credentialsOf.set(c.apartmentId, [...(credentialsOf.get(c.apartmentId) ?? []), c]);
  const monitorsOf = new Map<string, SiteSnapshot['devices']>();
  for (const d of [...s.devices].sort((a, b) => byText(a.mac, b.mac))) {
    if (d.type === INDOOR_MONITOR && d.apartmentId) monitorsOf.set(d.apartmentId, [...(monitorsOf.get(d.apartmentId) ?? []), d]);
  }
  const displayName = (r: { firstName: string; lastName: string }) => (s.site.contactDisplay === 'first-last' ? `${r.firstName} ${r.lastName}` : `${r.lastName} ${r.firstName}`);
  const apartmentOrder = (a: SiteSnapshot['apartments'][number], b: SiteSnapshot['apartments'][number]) =>
    byText(buildingName.get(a.buildingId) ?? '', buildingName.get(b.buildingId) ?? '') || byText(a.number, b.number);

  /** The apartments a device serves: its own, its building's, or (public area) the whole site's. */
  const served = (d: SiteSnapshot['devices'][number]) => {
    if (d.apartmentId) return s.apartments.filter((a) => a.id === d.apartmentId);
    if (d.buildingId) return [...(apartmentsOf.get(d.buildingId) ?? [])].sort(apartmentOrder);
    return [...s.apartments].sort(apartmentOrder);
  };

  const monitorTargets = (apartmentId: string) => (monitorsOf.get(apartmentId) ?? []).map((m) => ({ type: 'indoor-monitor', name: m.name, sipNumber: m.sipNumber }));
  const landlineTargets = (apartmentId: string) => {
    const numbers = new Set<string>();
    for (const r of residentsOf.get(apartmentId) ?? []) for (const n of r.landlines) numbers.add(n);
    return [...numbers].map((number) => ({ type: 'landline', number }));
  };
  // App accounts have no SIP identity yet (the calls issue allocates them): their step is listed, empty.
  const stepTargets = (step: CallStep, apartmentId: string) => (step === 'indoor-monitors' ? monitorTargets(apartmentId) : step === 'landlines' ? landlineTargets(apartmentId) : []);
  const call = (a: SiteSnapshot['apartments'][number]) =>
    a.contactPreference.mode === 'group'
      ? { mode: 'group', steps: [{ step: 'group', targets: monitorTargets(a.id) }] }
      : { mode: 'sequence', steps: a.contactPreference.steps.map((step) => ({ step, targets: stepTargets(step, a.id) })) };

  const apartmentContacts = (d: SiteSnapshot['devices'][number]) =>
    doc('contacts', {
      site: s.site.name,
      displayMode: s.site.contactDisplay,
      apartments: served(d).map((a) => ({
        apartment: a.number,
        building: buildingName.get(a.buildingId) ?? null,
        name: a.name,
        floor: a.floor,
        webRelayId: a.webRelayId,
        residents: (residentsOf.get(a.id) ?? []).map(displayName),
        call: call(a),
      })),
    });

  const entranceContacts = (d: SiteSnapshot['devices'][number]) => {
    const buildingId = d.buildingId ?? (d.apartmentId ? s.apartments.find((a) => a.id === d.apartmentId)?.buildingId : null) ?? null;
    const entrances = s.devices
      .filter((e) => e.mac !== d.mac && entranceTypes(e.type))
      .filter((e) => (!e.buildingId && !e.apartmentId) || (buildingId !== null && e.buildingId === buildingId && !e.apartmentId) || (d.apartmentId !== null && e.apartmentId === d.apartmentId))
      .sort((a, b) => byText(a.mac, b.mac));
    return doc('contacts', {
      site: s.site.name,
      displayMode: s.site.contactDisplay,
      entrances: entrances.map((e) => ({ name: e.name, location: e.location, sipNumber: e.sipNumber, type: e.type === GUARD_PHONE ? 'guard-phone' : 'door-phone' })),
    });
  };

  const accessList = (d: SiteSnapshot['devices'][number]) => {
    const pins: unknown[] = [];
    const cards: unknown[] = [];
    for (const a of served(d)) {
      const own = [...(credentialsOf.get(a.id) ?? [])].sort((x, y) => byText(x.value, y.value));
      for (const c of own) {
        const entry = { apartment: a.number, building: buildingName.get(a.buildingId) ?? null, validFrom: iso(c.validFrom), validUntil: iso(c.validUntil) };
        if (c.kind === 'pin') pins.push({ code: c.value, ...entry });
        else cards.push({ number: c.value, ...entry });
      }
    }
    return doc('credentials', { pinMode: s.site.pinMode, pins, cards });
  };

  return s.devices.map((d) => {
    const documents: RenderedDocument[] = [];
    if (callsApartments(d.type)) documents.push(apartmentContacts(d));
    else if (d.type === INDOOR_MONITOR) documents.push(entranceContacts(d));
    if (opensDoors(d.type)) documents.push(accessList(d));
    return { mac: d.mac, timeZone: s.site.timeZone, documents };
  });
}
