import { asc, eq } from 'drizzle-orm';
import type { Principal } from '../accounts/service.js';
import { notFound } from '../shared/errors.js';
import { type DirectoryAccess, editable, uniqueConflict } from './access.js';
import type { Residents } from './residents.js';
import type { CreateCredentialInput, CredentialView } from './schemas.js';
import { credentials, sites } from './tables.js';

type CredentialRow = typeof credentials.$inferSelect;

const credentialView = (c: CredentialRow): CredentialView => ({
  id: c.id,
  residentId: c.residentId,
  apartmentId: c.apartmentId,
  kind: c.kind,
  value: c.value,
  validFrom: c.validFrom?.toISOString() ?? null,
  validUntil: c.validUntil?.toISOString() ?? null,
  createdAt: c.createdAt.toISOString(),
});

/** What a PIN or card must be unique in (see the `credentials` table). */
const scopeOf = (kind: 'pin' | 'card', pinMode: 'pin' | 'apt-pin', apartmentId: string) => (kind === 'pin' && pinMode === 'apt-pin' ? apartmentId : 'site');

/** Residents' PIN codes and cards. */
export class Credentials {
  constructor(
    private readonly d: DirectoryAccess,
    private readonly residents: Residents,
  ) {}

  async create(principal: Principal, residentId: string, input: CreateCredentialInput): Promise<CredentialView> {
    return this.d.write(async (tx) => {
      const { resident, site } = await this.residents.find(tx, principal, residentId);
      editable(site);
      try {
        const [row] = await tx
          .insert(credentials)
          .values({
            siteId: site.id,
            apartmentId: resident.apartmentId,
            residentId,
            kind: input.kind,
            value: input.value,
            scope: scopeOf(input.kind, site.pinMode, resident.apartmentId),
            validFrom: input.validFrom ? new Date(input.validFrom) : null,
            validUntil: input.validUntil ? new Date(input.validUntil) : null,
          })
          .returning();
        await this.d.record(tx, principal, site, 'credential.created', row!.id, { kind: input.kind });
        return credentialView(row!);
      } catch (err) {
        const where = input.kind === 'card' ? 'site' : site.pinMode === 'apt-pin' ? 'apartment' : 'site';
        uniqueConflict(err, { credentials_unique_idx: [`${input.kind}_taken`, `that ${input.kind === 'pin' ? 'PIN' : 'card'} is already in use in this ${where}`] });
      }
    });
  }

  async list(principal: Principal, residentId: string): Promise<CredentialView[]> {
    await this.residents.find(this.d.db, principal, residentId);
    const rows = await this.d.db.select().from(credentials).where(eq(credentials.residentId, residentId)).orderBy(asc(credentials.createdAt), asc(credentials.id));
    return rows.map(credentialView);
  }

  /** Revokes a PIN or card: it leaves the lists of the devices that accepted it. */
  async remove(principal: Principal, credentialId: string): Promise<void> {
    await this.d.write(async (tx) => {
      const rows = await tx.select({ credential: credentials, site: sites }).from(credentials).innerJoin(sites, eq(sites.id, credentials.siteId)).where(eq(credentials.id, credentialId)).limit(1);
      const row = rows[0];
      if (!row || !this.d.owns(principal, row.site)) throw notFound('credential', { credentialId });
      await tx.delete(credentials).where(eq(credentials.id, credentialId));
      await this.d.record(tx, principal, row.site, 'credential.revoked', credentialId, { kind: row.credential.kind });
    });
  }
}
