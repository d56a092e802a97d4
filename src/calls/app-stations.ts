import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { and, asc, count, countDistinct, eq, inArray, isNull, type SQL } from 'drizzle-orm';
import QRCode from 'qrcode';
import type { Principal } from '../accounts/service.js';
import { recordWrite, recordWriteAs } from '../audit/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import { deviceFacts } from '../devices/queries.js';
import { newSipPassword, nextSipNumber } from '../devices/sip-account.js';
import type { TenantAccess, TenantAccessWithdrawn } from '../directory/apartments.js';
import type { DirectoryService } from '../directory/service.js';
import { badRequest, conflict, DomainError, notFound } from '../shared/errors.js';
import {
  MAX_APPS_PER_APARTMENT,
  type AddressBookEntry,
  type AppLicencesChange,
  type AppLicencesView,
  type AppRegistrationView,
  type AppStationView,
  type ExchangeInput,
  type ExchangeView,
  type AppSipAccess,
} from './schemas.js';
import { GUARD_PHONE, INDOOR_MONITOR, isEntrance } from '../devices/types.js';
import { ixgAddressBook, ixgSlots } from './ixg-apps.js';
import { appLicences, appRegistrationCodes, appStations, sipRegistrations } from './tables.js';

/** What app stations need of the directory: access checks on sites and apartments, and device placements. */
export type AppStationDirectory = Pick<DirectoryService, 'apartmentFor' | 'siteFor' | 'placementsServing'>;

export interface AppStationsOptions {
  db: Db;
  directory: AppStationDirectory;
  /** The URL an app redeems a code at (the public address of `POST /api/v1/app-registrations/{code}`). */
  registrationUrl: (code: string) => string;
  /** The deployment's SIP server as apps reach it; null while SIP is off (stations are still made). */
  sipEndpoint: () => AppSipAccess | null;
  /** The clock codes expire by (tests move it). */
  now?: () => Date;
}

/** The SIP account of an app station, as the SIP server's routing asks for it. */
export interface AppStationAccount {
  id: string;
  siteId: string;
  apartmentId: string;
  installerId: string;
  password: string;
}

/** How long a registration code is valid. */
const REGISTRATION_CODE_TTL_MS = 24 * 3600_000;

// 16 random bytes (128 bits) as 26 characters of RFC 4648 base32: fits a QR code, typed if need be.
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const CODE_FORMAT = /^[A-Z2-7]{26}$/;

function base32(bytes: Buffer): string {
  let out = '';
  let value = 0;
  let bits = 0;
  for (const byte of bytes) {
    value = ((value << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

const newCode = () => base32(randomBytes(16));
const hashCode = (code: string) => createHash('sha256').update(code).digest('hex');

/** The one answer to an unknown, used, expired or malformed code: nothing tells them apart. */
const REGISTRATION_CODE_INVALID = 'registration_code_invalid';
const invalidCode = () => new DomainError('not_found', REGISTRATION_CODE_INVALID, 'the registration code is not valid: unknown, already used or expired');
export const isInvalidCode = (err: unknown) => err instanceof DomainError && err.code === REGISTRATION_CODE_INVALID;

const licenceExhausted = (units: number, used: number) =>
  new DomainError('forbidden', 'licence_exhausted', `every app licence of the site is in use (${used} of ${units} units); raise the licence count first`, { units, used });

const TYPE_ORDER: Record<AddressBookEntry['type'], number> = { 'door-phone': 0, 'guard-phone': 1, 'indoor-monitor': 2, 'ixg-station': 3 };

type StationRow = typeof appStations.$inferSelect;
const stationView = (s: StationRow): AppStationView => ({ id: s.id, name: s.name, sipNumber: s.sipNumber, ixgApp: s.ixgApp, createdAt: s.createdAt.toISOString() });

/**
 * Residents' apps as intercom stations (seed 000 "Mobile App Service"). A site's licence counts units
 * (apartments) with apps; each apartment has up to 8. The installer or a property manager makes a one-time
 * code (shown as a QR code) for an apartment; an app redeems it once, within 24 h, for a SIP account of its
 * own and the apartment's address book: the door and guard phones serving it and its indoor monitors.
 * Every write is audited in its own transaction; SIP passwords are never audited, logged or listed.
 */
export class AppStations implements TenantAccess {
  /** The clock codes expire by (tests move it). */
  now: () => Date;
  private readonly db: Db;
  private readonly directory: AppStationDirectory;
  private readonly registrationUrl: (code: string) => string;
  private readonly sipEndpoint: () => AppSipAccess | null;

  constructor(opts: AppStationsOptions) {
    this.db = opts.db;
    this.directory = opts.directory;
    this.registrationUrl = opts.registrationUrl;
    this.sipEndpoint = opts.sipEndpoint;
    this.now = opts.now ?? (() => new Date());
  }

  // ---- licences

  private async licenceState(q: Queryable, siteId: string, lock = false): Promise<AppLicencesView> {
    const query = q.select({ units: appLicences.units }).from(appLicences).where(eq(appLicences.siteId, siteId));
    const licence = lock ? await query.for('update') : await query;
    const used = await q.select({ n: countDistinct(appStations.apartmentId) }).from(appStations).where(eq(appStations.siteId, siteId));
    return { units: licence[0]?.units ?? 0, used: used[0]?.n ?? 0 };
  }

  /** The site's licensed units and how many of them have apps. */
  async licences(principal: Principal, siteId: string): Promise<AppLicencesView> {
    await this.directory.siteFor(this.db, principal, siteId);
    return this.licenceState(this.db, siteId);
  }

  /**
   * Sets the site's licence count (the new total). The apartments named in `release` lose their licence
   * first: their app stations and registration codes go. Below the units still with apps it is refused
   * (409 `licence_in_use`). Other apartments' codes stay: redeeming one checks for a free unit again.
   */
  async setLicences(principal: Principal, siteId: string, change: AppLicencesChange): Promise<AppLicencesView & TenantAccessWithdrawn> {
    const { units } = change;
    const release = [...new Set(change.release ?? [])];
    return this.db.transaction(async (tx) => {
      const site = await this.directory.siteFor(tx, principal, siteId);
      // Released apartments first, before the licence row is locked: a code being redeemed holds its code
      // and then waits for the licence row, so taking them in the other order could make the two wait on each other.
      const withdrawn = { appStationsRemoved: 0, codesRevoked: 0 };
      for (const apartmentId of release) {
        // Locked as a reset locks it: no code made for it meanwhile survives.
        const { apartment } = await this.directory.apartmentFor(tx, principal, apartmentId, 'reset').catch((err: unknown) => {
          if (err instanceof DomainError && err.kind === 'not_found') throw badRequest('apartment_not_found', `no apartment ${apartmentId} of yours`, { apartmentId });
          throw err;
        });
        if (apartment.siteId !== siteId) throw badRequest('apartment_not_found', `apartment ${apartmentId} is not in this site`, { apartmentId });
        const w = await this.withdraw(tx, apartmentId);
        withdrawn.appStationsRemoved += w.appStationsRemoved;
        withdrawn.codesRevoked += w.codesRevoked;
      }
      // The licence row, made if missing, is locked: registrations of the site wait for this change.
      await tx.insert(appLicences).values({ siteId, units: 0 }).onConflictDoNothing();
      const after = await this.licenceState(tx, siteId, true);
      if (units < after.used) throw conflict('licence_in_use', `${after.used} units of the site have apps: name the apartments to release (release), or remove apps, before lowering the licence count below that`, { units, used: after.used });
      await tx.update(appLicences).set({ units, updatedAt: new Date() }).where(eq(appLicences.siteId, siteId));
      await recordWrite(tx, principal, { installerId: site.installerId, siteId, action: 'app-licences.set', subject: siteId, details: { units, before: after.units, released: release, appStations: withdrawn.appStationsRemoved, codes: withdrawn.codesRevoked } });
      return { units, used: after.used, ...withdrawn };
    });
  }

  /** Revokes the unredeemed codes `where` names; answers how many could still have been redeemed. */
  private async revokeCodes(tx: Tx, where: SQL | undefined): Promise<number> {
    const revoked = await tx.delete(appRegistrationCodes).where(and(where, isNull(appRegistrationCodes.usedAt))).returning({ expiresAt: appRegistrationCodes.expiresAt });
    const now = this.now().getTime();
    return revoked.filter((c) => c.expiresAt.getTime() > now).length;
  }

  /**
   * The apartment's tenants lose their apps (TenantAccess, inside the directory's reset or removal): its
   * unredeemed codes are revoked first (a code being redeemed now finishes, and its station goes next), then
   * its app stations and their registrations are removed: their SIP accounts fail at once.
   */
  async withdraw(tx: Tx, apartmentId: string): Promise<TenantAccessWithdrawn> {
    const codesRevoked = await this.revokeCodes(tx, eq(appRegistrationCodes.apartmentId, apartmentId));
    const removed = await tx.delete(appStations).where(eq(appStations.apartmentId, apartmentId)).returning({ sipNumber: appStations.sipNumber });
    if (removed.length) await tx.delete(sipRegistrations).where(inArray(sipRegistrations.sipNumber, removed.map((r) => r.sipNumber)));
    return { appStationsRemoved: removed.length, codesRevoked };
  }

  /**
   * Whether the apartment may have one more app: fewer than 8 there, and a free licence if it has none yet.
   * With `lock`, the site's licence row is locked first: concurrent registrations of a site take turns.
   * Answers the apartment's app count.
   */
  private async checkRoom(q: Queryable, site: { id: string; managedBy: string | null }, apartmentId: string, lock: boolean): Promise<{ apps: number; ixgApp: string | null }> {
    const licence = await this.licenceState(q, site.id, lock);
    const rows = await q.select({ n: count() }).from(appStations).where(eq(appStations.apartmentId, apartmentId));
    const inApartment = rows[0]?.n ?? 0;
    if (inApartment >= MAX_APPS_PER_APARTMENT) throw conflict('apartment_full', `the apartment already has ${MAX_APPS_PER_APARTMENT} apps; remove one first`, { apartmentId, apps: inApartment });
    // An IXG unit has as many apps as its upload lists: each app station takes one listing.
    const slots = site.managedBy === 'ixg' ? await ixgSlots(q, site.id, apartmentId) : null;
    if (slots && !slots.free) throw conflict('apartment_full', `the unit's IXG settings list ${slots.listed} app(s), all connected; add one in the IXG Support Tool or remove an app`, { apartmentId, apps: inApartment, listed: slots.listed });
    if (inApartment === 0 && licence.used >= licence.units) throw licenceExhausted(licence.units, licence.used);
    return { apps: inApartment, ixgApp: slots?.free ?? null };
  }

  // ---- registration codes

  /**
   * A one-time registration code for the apartment, valid 24 h, with its URL and QR code. Only its SHA-256
   * is kept: the code is shown only in this answer.
   */
  async createRegistration(principal: Principal, apartmentId: string): Promise<AppRegistrationView> {
    const code = newCode();
    const row = await this.db.transaction(async (tx) => {
      // Shared: a reset of the apartment waits for this code, and revokes it, or comes first.
      const { site } = await this.directory.apartmentFor(tx, principal, apartmentId, 'share');
      await this.checkRoom(tx, site, apartmentId, false);
      const expiresAt = new Date(this.now().getTime() + REGISTRATION_CODE_TTL_MS);
      const [created] = await tx.insert(appRegistrationCodes).values({ codeHash: hashCode(code), siteId: site.id, apartmentId, createdBy: principal.actorId, expiresAt }).returning();
      await recordWrite(tx, principal, { installerId: site.installerId, siteId: site.id, action: 'app-registration.created', subject: created!.id, details: { apartmentId, expiresAt: expiresAt.toISOString() } });
      return created!;
    });
    const registrationUrl = this.registrationUrl(code);
    const png = await QRCode.toDataURL(registrationUrl, { errorCorrectionLevel: 'M', margin: 2, width: 320 });
    return { id: row.id, code, expiresAt: row.expiresAt.toISOString(), registrationUrl, qr: { text: registrationUrl, png } };
  }

  /**
   * Redeems a code (no account: the code is the credential) for a new app station of its apartment: its SIP
   * account and address book. In one transaction the code is locked, checked (unknown, used and expired
   * codes all answer 404 `registration_code_invalid`), the apartment's room checked again, the station made
   * and the code marked used.
   */
  async exchange(code: string, input: ExchangeInput = {}): Promise<ExchangeView> {
    const normal = code.toUpperCase();
    if (!CODE_FORMAT.test(normal)) throw invalidCode();
    const password = newSipPassword();
    const { station, addressBook } = await this.db.transaction(async (tx) => {
      const [registration] = await tx.select().from(appRegistrationCodes).where(eq(appRegistrationCodes.codeHash, hashCode(normal))).limit(1).for('update');
      if (!registration || registration.usedAt || registration.expiresAt.getTime() <= this.now().getTime()) throw invalidCode();
      const { apartment, site } = await this.directory.apartmentFor(tx, null, registration.apartmentId);
      const { apps, ixgApp } = await this.checkRoom(tx, site, apartment.id, true);
      const name = input?.name ?? `App ${apps + 1}`;
      const [station] = await tx
        .insert(appStations)
        .values({ siteId: site.id, apartmentId: apartment.id, installerId: site.installerId, name, sipNumber: nextSipNumber(), sipPassword: password, ixgApp })
        .returning();
      await tx.update(appRegistrationCodes).set({ usedAt: this.now(), appStationId: station!.id }).where(eq(appRegistrationCodes.id, registration.id));
      // No account signed in: the write is the code issuer's (or, that account gone, the site installer's).
      await recordWriteAs(tx, registration.createdBy ?? site.installerId, {
        installerId: site.installerId,
        siteId: site.id,
        action: 'app-station.registered',
        subject: station!.id,
        details: { apartmentId: apartment.id, registrationId: registration.id, name, sipNumber: station!.sipNumber, ...(ixgApp ? { ixgApp } : {}) },
      });
      return { station: station!, addressBook: ixgApp ? await ixgAddressBook(tx, site.id, ixgApp) : await this.bookOf(tx, apartment) };
    });
    const endpoint = this.sipEndpoint();
    return {
      station: { id: station.id, name: station.name, sipNumber: station.sipNumber, apartmentId: station.apartmentId, siteId: station.siteId },
      sip: { username: station.sipNumber, password, domain: endpoint?.domain ?? null, servers: endpoint?.servers ?? [] },
      addressBook,
    };
  }

  // ---- stations

  /** The apartment's app stations (never their passwords), oldest first. */
  async list(principal: Principal, apartmentId: string): Promise<AppStationView[]> {
    await this.directory.apartmentFor(this.db, principal, apartmentId);
    const rows = await this.db.select().from(appStations).where(eq(appStations.apartmentId, apartmentId)).orderBy(asc(appStations.createdAt), asc(appStations.id));
    return rows.map(stationView);
  }

  /** Removes an app station: its SIP account stops working at once, and its apartment's slot (and licence use) is free. */
  async remove(principal: Principal, stationId: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const [station] = await tx.select().from(appStations).where(eq(appStations.id, stationId)).limit(1).for('update');
      if (!station) throw notFound('app station', { appStationId: stationId });
      const site = await this.directory.siteFor(tx, principal, station.siteId).catch((err: unknown) => {
        if (err instanceof DomainError && err.kind === 'not_found') throw notFound('app station', { appStationId: stationId });
        throw err;
      });
      await tx.delete(appStations).where(eq(appStations.id, stationId));
      // Its registration goes with it: the number shows unregistered at once.
      await tx.delete(sipRegistrations).where(eq(sipRegistrations.sipNumber, station.sipNumber));
      await recordWrite(tx, principal, { installerId: site.installerId, siteId: site.id, action: 'app-station.removed', subject: stationId, details: { apartmentId: station.apartmentId, sipNumber: station.sipNumber } });
    });
  }

  // ---- for the SIP server

  /** The app station holding this SIP number, with its password (for the SIP server's authentication); null: none. */
  async account(sipNumber: string): Promise<AppStationAccount | null> {
    const rows = await this.db
      .select({ id: appStations.id, siteId: appStations.siteId, apartmentId: appStations.apartmentId, installerId: appStations.installerId, password: appStations.sipPassword })
      .from(appStations)
      .where(eq(appStations.sipNumber, sipNumber))
      .limit(1);
    return rows[0] ?? null;
  }

  /** The SIP number of the app station these credentials are (its SIP username and password); null: none. */
  async authenticate(username: string, password: string): Promise<string | null> {
    if (!/^[0-9]{10}$/.test(username) || password.length > 128) return null;
    const account = await this.account(username);
    const expected = Buffer.from(account?.password ?? 'no such station, compared all the same');
    const got = Buffer.from(password);
    const same = got.length === expected.length && timingSafeEqual(got, expected);
    return account && same ? username : null;
  }

  /** The address book of the app station holding this SIP number; null: no such station. */
  async addressBook(stationSipNumber: string): Promise<AddressBookEntry[] | null> {
    const rows = await this.db.select({ apartmentId: appStations.apartmentId, siteId: appStations.siteId, ixgApp: appStations.ixgApp }).from(appStations).where(eq(appStations.sipNumber, stationSipNumber)).limit(1);
    if (!rows[0]) return null;
    if (rows[0].ixgApp) return ixgAddressBook(this.db, rows[0].siteId, rows[0].ixgApp);
    const { apartment } = await this.directory.apartmentFor(this.db, null, rows[0].apartmentId);
    return this.bookOf(this.db, apartment);
  }

  /**
   * An apartment's address book: the door and guard phones serving it (placed in its site's public area, in
   * its building, or in it) and its indoor monitors. A door or guard phone releases a door from a call when
   * it has an enabled relay with a DTMF code.
   */
  private async bookOf(q: Queryable, apartment: { id: string; siteId: string; buildingId: string }): Promise<AddressBookEntry[]> {
    const placed = new Map((await this.directory.placementsServing(q, apartment)).map((p) => [p.mac, p]));
    const entries: AddressBookEntry[] = [];
    for (const d of await deviceFacts(q, [...placed.keys()])) {
      const entrance = isEntrance(d.type);
      const monitor = d.type === INDOOR_MONITOR && placed.get(d.mac)?.apartmentId === apartment.id;
      if (!entrance && !monitor) continue;
      entries.push({
        sipNumber: d.sipNumber,
        name: d.name,
        type: monitor ? 'indoor-monitor' : d.type === GUARD_PHONE ? 'guard-phone' : 'door-phone',
        location: d.location,
        doorRelease: entrance && d.relays.some((r) => r.enabled && r.dtmf.length > 0),
      });
    }
    const byText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    return entries.sort((a, b) => TYPE_ORDER[a.type] - TYPE_ORDER[b.type] || byText(a.name, b.name) || byText(a.sipNumber, b.sipNumber));
  }
}
