import { ACCESS_CONTROL, GUARD_PHONE, INDOOR_MONITOR, isEntrance } from '../devices/types.js';
import type { CallDirectory } from '../directory/placements.js';

// Pure call routing: who a station may reach, and in what order the callee's stations ring. The SIP
// back end feeds it the caller's site (one read) and turns the answer into Kamailio's plan line.


/** How long a sequence step rings before the next when the apartment sets no timeout. */
const DEFAULT_STEP_TIMEOUT_SECONDS = 20;

/** A station of the site: a placed device or an app station. */
export interface Station {
  sipNumber: string;
  kind: 'device' | 'app';
  /** Device type code ('0' door phone … '50' access control); 'app' for app stations. */
  type: string;
  buildingId: string | null;
  apartmentId: string | null;
}

export interface RoutingSite {
  directory: CallDirectory;
  stations: Station[];
}

export type RoutePlan =
  | { action: 'refuse'; status: number; reason: string; apartmentId?: string }
  | { action: 'ring'; stepTimeoutSeconds: number; steps: string[][]; apartmentId: string | null };

const refuse = (status: number, reason: string): RoutePlan => ({ action: 'refuse', status, reason });
const SIP_NUMBER = /^[0-9]{10}$/;
const APARTMENT_NUMBER = /^[0-9][0-9#]{0,11}$/;

/** The building of a station, directly or through its apartment. */
function buildingOf(s: { buildingId: string | null; apartmentId: string | null }, site: CallDirectory): string | null {
  if (s.buildingId) return s.buildingId;
  if (s.apartmentId) return site.apartments.find((a) => a.id === s.apartmentId)?.buildingId ?? null;
  return null;
}

/** Whether an entrance (door or guard phone) serves an apartment: public area, its building, or the apartment itself. */
function serves(entrance: Station, apartmentId: string, site: CallDirectory): boolean {
  if (entrance.type === GUARD_PHONE && !entrance.apartmentId && !entrance.buildingId) return true;
  if (entrance.apartmentId) return entrance.apartmentId === apartmentId;
  if (!entrance.buildingId) return true;
  return site.apartments.find((a) => a.id === apartmentId)?.buildingId === entrance.buildingId;
}

/** The stations to ring for an apartment, step by step, per its contact preference. */
function apartmentSteps(apartmentId: string, site: RoutingSite, caller: Station): { steps: string[][]; timeout: number } {
  const apartment = site.directory.apartments.find((a) => a.id === apartmentId)!;
  const of = (type: 'app' | typeof INDOOR_MONITOR) =>
    site.stations.filter((s) => s.apartmentId === apartmentId && s.type === type && s.sipNumber !== caller.sipNumber).map((s) => s.sipNumber).sort();
  const pref = apartment.contactPreference;
  if (pref.mode === 'group') return { steps: [[...of(INDOOR_MONITOR), ...of('app')]].filter((s) => s.length), timeout: 0 };
  // Landlines are not reached: this service has no telephone gateway (they stay in the contact documents).
  const steps = pref.steps.map((step) => (step === 'app-accounts' ? of('app') : step === 'indoor-monitors' ? of(INDOOR_MONITOR) : [])).filter((s) => s.length);
  return { steps, timeout: pref.stepTimeoutSeconds ?? DEFAULT_STEP_TIMEOUT_SECONDS };
}

/** Whether `caller` may call station `callee` of the same site. */
function mayCallStation(caller: Station, callee: Station, site: CallDirectory): boolean {
  if (callee.type === ACCESS_CONTROL || caller.type === ACCESS_CONTROL) return false;
  // A guard phone calls anyone of its site; it is called by the stations it serves, as a door phone is.
  if (caller.type === GUARD_PHONE) return true;
  if (isEntrance(caller.type)) {
    // A door phone calls the stations of the apartments it serves.
    return !isEntrance(callee.type) && callee.apartmentId !== null && serves(caller, callee.apartmentId, site);
  }
  // Indoor monitors and apps: the entrances serving their apartment, their own apartment's stations, and
  // other apartments' stations only where the site allows community calls.
  if (isEntrance(callee.type)) return caller.apartmentId !== null && serves(callee, caller.apartmentId, site);
  if (callee.apartmentId !== null && callee.apartmentId === caller.apartmentId) return true;
  return site.site.communityCalls;
}

/**
 * What `dialled` reaches from `caller`. A number outside the caller's site is never routed: the site's
 * stations and apartments are the only candidates, so another installer's devices are unreachable.
 */
export function routeCall(caller: Station, dialled: string, site: RoutingSite): RoutePlan {
  if (caller.type === ACCESS_CONTROL) return refuse(403, 'Access control terminals place no calls');
  if (SIP_NUMBER.test(dialled)) {
    const callee = site.stations.find((s) => s.sipNumber === dialled);
    if (!callee || callee.sipNumber === caller.sipNumber) return refuse(404, 'Not Found');
    if (!mayCallStation(caller, callee, site.directory)) return refuse(403, caller.kind === 'app' ? 'Not in address book' : 'Not allowed');
    return { action: 'ring', stepTimeoutSeconds: 0, steps: [[callee.sipNumber]], apartmentId: callee.apartmentId };
  }
  if (!APARTMENT_NUMBER.test(dialled)) return refuse(404, 'Not Found');
  const matches = site.directory.apartments.filter((a) => a.number === dialled);
  // An entrance dials within what it serves; a resident's own building is looked at before the site.
  let candidates = isEntrance(caller.type) ? matches.filter((a) => serves(caller, a.id, site.directory)) : matches;
  const home = buildingOf(caller, site.directory);
  if (candidates.length > 1 && home) {
    const inBuilding = candidates.filter((a) => a.buildingId === home);
    if (inBuilding.length) candidates = inBuilding;
  }
  if (!candidates.length) return refuse(404, 'Not Found');
  if (candidates.length > 1) return refuse(485, 'Ambiguous');
  const apartment = candidates[0]!;
  if (!isEntrance(caller.type) && apartment.id !== caller.apartmentId && !site.directory.site.communityCalls) return refuse(403, 'Community calls are off');
  const { steps, timeout } = apartmentSteps(apartment.id, site, caller);
  if (!steps.length) return { action: 'refuse', status: 480, reason: 'Nobody to ring', apartmentId: apartment.id };
  return { action: 'ring', stepTimeoutSeconds: timeout, steps, apartmentId: apartment.id };
}

/** Kamailio's plan line (src/calls/kamailio-calls.cfg, route[CALL]). */
export function planLine(plan: RoutePlan): string {
  if (plan.action === 'refuse') return `refuse ${plan.status} ${plan.reason}`;
  return `ring ${plan.stepTimeoutSeconds} ${plan.steps.map((s) => s.join('.')).join('/')}`;
}
