// What a device's type code (devices/schemas.ts `deviceTypeCodes`) means for the directory and for calls.
// One place: the contact documents, the app address books and call routing must agree on it.

export const INDOOR_MONITOR = '2';
export const GUARD_PHONE = '3';
export const ACCESS_CONTROL = '50';
const DOOR_PHONES = new Set(['0', '1']);

/** A multi- or single-tenant door phone. */
export const isDoorPhone = (type: string) => DOOR_PHONES.has(type);
/** An entrance: a door or guard phone (what calls apartments, and what monitors and apps list as door stations). */
export const isEntrance = (type: string) => isDoorPhone(type) || type === GUARD_PHONE;

/** Device types an apartment may hold: its indoor monitors and a single-tenant door phone (a villa). */
export const APARTMENT_TYPES: ReadonlySet<string> = new Set(['1', INDOOR_MONITOR]);
