import { and, asc, eq, gte, sql } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import type { Db } from '../db/client.js';
import type { DirectoryService } from '../directory/service.js';
import { appStations, appStatusDays, sipRegistrations } from './tables.js';

export interface AppStatusView {
  unitsWithApps: number;
  apps: number;
  /** Apps whose SIP account is registered now. */
  activeApps: number;
  /** Per day in the site's time zone, oldest first: the most units with apps and active apps seen that day. */
  daily: { day: string; unitsWithApps: number; activeApps: number }[];
}

/**
 * Status of Apps (seed 000): units with apps and active apps now, and a daily series. The engine records
 * each day's figures hourly (`snapshot`); a day keeps the most seen, and today also counts what is read now.
 */
export class AppStatus {
  constructor(
    private readonly db: Db,
    private readonly directory: Pick<DirectoryService, 'siteFor'>,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** One statement for every site with apps. */
  async snapshot(): Promise<void> {
    const at = this.now().toISOString();
    await this.db.execute(sql`
      INSERT INTO app_status_days (site_id, day, units_with_apps, active_apps)
      SELECT a.site_id, to_char(${at}::timestamptz AT TIME ZONE s.time_zone, 'YYYY-MM-DD'), count(DISTINCT a.apartment_id)::int,
             (count(r.sip_number) FILTER (WHERE r.expires_at > ${at}::timestamptz))::int
      FROM app_stations a JOIN sites s ON s.id = a.site_id LEFT JOIN sip_registrations r ON r.sip_number = a.sip_number
      GROUP BY a.site_id, s.time_zone
      ON CONFLICT (site_id, day) DO UPDATE SET units_with_apps = greatest(app_status_days.units_with_apps, excluded.units_with_apps),
                                               active_apps = greatest(app_status_days.active_apps, excluded.active_apps)`);
  }

  async status(principal: Principal, siteId: string, days: number): Promise<AppStatusView> {
    const site = await this.directory.siteFor(this.db, principal, siteId);
    const now = this.now();
    const [live] = await this.db
      .select({
        units: sql<number>`count(DISTINCT ${appStations.apartmentId})::int`,
        apps: sql<number>`count(*)::int`,
        active: sql<number>`(count(${sipRegistrations.sipNumber}) FILTER (WHERE ${sipRegistrations.expiresAt} > ${now.toISOString()}::timestamptz))::int`,
      })
      .from(appStations)
      .leftJoin(sipRegistrations, eq(sipRegistrations.sipNumber, appStations.sipNumber))
      .where(eq(appStations.siteId, siteId));
    const dayOf = (d: Date) => new Intl.DateTimeFormat('en-CA', { timeZone: site.timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(d);
    const today = dayOf(now);
    const first = dayOf(new Date(now.getTime() - (days - 1) * 86_400_000));
    const rows = await this.db
      .select({ day: appStatusDays.day, unitsWithApps: appStatusDays.unitsWithApps, activeApps: appStatusDays.activeApps })
      .from(appStatusDays)
      .where(and(eq(appStatusDays.siteId, siteId), gte(appStatusDays.day, first)))
      .orderBy(asc(appStatusDays.day));
    const current = { unitsWithApps: live!.units, activeApps: live!.active };
    const stored = rows.find((r) => r.day === today);
    const daily = rows.filter((r) => r.day !== today);
    daily.push({ day: today, unitsWithApps: Math.max(stored?.unitsWithApps ?? 0, current.unitsWithApps), activeApps: Math.max(stored?.activeApps ?? 0, current.activeApps) });
    return { unitsWithApps: live!.units, apps: live!.apps, activeApps: live!.active, daily };
  }
}
