import type { Principal } from '../accounts/service.js';
import type { Db, Queryable, Tx } from '../db/client.js';
import { DirectoryAccess, type SiteRow } from './access.js';
import { Apartments, type ApartmentRow } from './apartments.js';
import { Buildings } from './buildings.js';
import { Credentials } from './credentials.js';
import { mirrorIxgUnits, type MirroredBuilding, type MirrorResult } from './ixg-mirror.js';
import { Placements } from './placements.js';
import { Residents } from './residents.js';
import { SiteTemplates } from './site-templates.js';
import { Sites } from './sites.js';

/**
 * The directory: sites, buildings, apartments, residents and their PIN codes and cards, and where devices
 * are installed, one part per resource as the routes have them. Every write also records which site
 * changed, in the same transaction, and pokes the follower, which renders the site's devices again and
 * provisions those whose documents changed. The methods below are what other domains read.
 */
export class DirectoryService {
  private readonly access: DirectoryAccess;
  readonly sites: Sites;
  readonly buildings: Buildings;
  /** Apartments and their reset (src/directory/apartments.ts). */
  readonly apartments: Apartments;
  readonly residents: Residents;
  readonly credentials: Credentials;
  /** The portal's resident template, import and export. */
  readonly templates: SiteTemplates;
  /** Where devices are installed: the devices domain's `DevicePlacements`. */
  readonly placements: Placements;

  constructor(db: Db) {
    this.access = new DirectoryAccess(db);
    this.sites = new Sites(this.access);
    this.buildings = new Buildings(this.access);
    this.apartments = new Apartments(this.access);
    this.residents = new Residents(this.access, this.apartments);
    this.credentials = new Credentials(this.access, this.residents);
    this.placements = new Placements(this.access, this.apartments);
    this.templates = new SiteTemplates(this.access, this.placements);
  }

  /** The follower to wake once a change committed. */
  onChange(poke: () => void): void {
    this.access.onChange(poke);
  }

  /** The sites a property manager manages (the API's authentication scopes its principal by them). */
  managedSites(accountId: string): Promise<string[]> {
    return this.sites.managedBy(accountId);
  }

  /** Checks the caller may read the site (for its audit log, calls and door events, which other domains serve). */
  readableSite(principal: Principal, siteId: string): Promise<void> {
    return this.sites.readable(principal, siteId);
  }

  /** The site when the caller may see it (404 otherwise), read in `q`. */
  siteFor(q: Queryable, principal: Principal, siteId: string): Promise<SiteRow> {
    return this.access.site(q, principal, siteId);
  }

  /**
   * The apartment and its site, when the caller may see them (404 otherwise), read in `q`. With no
   * principal, whoever's: work done on behalf of a one-time code its issuer made. With `share`, the
   * apartment is not reset before `q`'s transaction ends; with `reset`, it is locked as a reset locks it.
   */
  apartmentFor(q: Queryable, principal: Principal | null, apartmentId: string, lock?: 'share' | 'reset'): Promise<{ apartment: ApartmentRow; site: SiteRow }> {
    return this.apartments.find(q, principal, apartmentId, lock);
  }

  /**
   * An IXG upload's buildings and units made the site's (src/directory/ixg-mirror.ts), in the caller's
   * transaction, which also marks the site for rendering; call `committed` once it committed.
   */
  async mirrorIxg(tx: Tx, siteId: string, upload: MirroredBuilding[]): Promise<MirrorResult> {
    const mirrored = await mirrorIxgUnits(tx, siteId, upload);
    await this.access.changed(tx, siteId, null);
    return mirrored;
  }

  /** Wakes the follower after a write made through `mirrorIxg` committed. */
  committed(): void {
    this.access.committed();
  }

  of: Placements['of'] = (macs, q) => this.placements.of(macs, q);
  placementsServing: Placements['placementsServing'] = (q, apartment) => this.placements.placementsServing(q, apartment);
  callDirectory: Placements['callDirectory'] = (siteId, focus) => this.placements.callDirectory(siteId, focus);
}
