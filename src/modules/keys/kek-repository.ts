import type { KekStore } from '../../crypto/keyring.ts';
import type { Executor } from '../../storage/database.ts';

/** KEK rows and per-tenant key state (current version for new wraps, minimum for decryption). */
export function createKekRepository(db: Executor) {
  return {
    async loadState(tenantId: string) {
      const row = await db.selectFrom('tenants').select(['kek_version', 'kek_min_version']).where('id', '=', tenantId).executeTakeFirst();
      return row ? { current: row.kek_version, min: row.kek_min_version } : null;
    },
    async loadWrappedKek(tenantId: string, version: number) {
      const row = await db.selectFrom('tenant_keks').select('wrapped_key')
        .where('tenant_id', '=', tenantId).where('version', '=', version).executeTakeFirst();
      return row?.wrapped_key ?? null;
    },
    async insertKek(tenantId: string, version: number, wrapped: Uint8Array, now: number) {
      await db.insertInto('tenant_keks').values({ tenant_id: tenantId, version, wrapped_key: wrapped, created_at: now, retired_at: null }).execute();
    },
    async listKeks(tenantId: string) {
      return db.selectFrom('tenant_keks').select(['version', 'created_at', 'retired_at'])
        .where('tenant_id', '=', tenantId).orderBy('version').execute();
    },
    async countDeksByVersion(tenantId: string) {
      return db.selectFrom('secret_versions').select(['kek_version', (eb) => eb.fn.countAll<number>().as('count')])
        .where('tenant_id', '=', tenantId).where('wrapped_dek', 'is not', null).groupBy('kek_version').execute();
    },
  } satisfies KekStore & Record<string, unknown>;
}

export type KekRepository = ReturnType<typeof createKekRepository>;
