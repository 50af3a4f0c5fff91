import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import { createSecretRepository } from './secret-repository.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import type { SealedRowCache } from './sealed-row-cache.ts';

/**
 * Crypto-shreds versions superseded longer ago than the rollback window: their data key is
 * deleted, so the ciphertext in this database can never be opened again. Never the current one.
 * A backup taken before the sweep still holds the wrapped key and opens with the unseal shares
 * (docs/threat-model.md, "Backups").
 */
export function createRetentionJob(deps: {
  db: Kysely<Database>; clock: Clock; rollbackWindowMs: number; keyring: Pick<Keyring, 'forgetDeks'>; rows: Pick<SealedRowCache, 'forgetTenant'>;
}) {
  const { db, clock, rollbackWindowMs, keyring, rows } = deps;
  return {
    async sweep(batchSize = 500): Promise<number> {
      let destroyed = 0;
      for (;;) {
        const now = clock.now();
        const candidates = await createSecretRepository(db).expiredSuperseded(now - rollbackWindowMs, batchSize);
        const victims = candidates.filter((r) => r.current_version !== r.version);
        if (victims.length === 0) return destroyed;
        await db.transaction().execute(async (trx) => {
          const r = createSecretRepository(trx);
          for (const v of victims) {
            await r.clearDestroyedLabels(v.secret_id, v.environment_id, v.version);
            destroyed += await r.destroyVersions(v.tenant_id, v.secret_id, [v.id], now);
          }
        });
        for (const tenantId of new Set(victims.map((v) => v.tenant_id))) {
          keyring.forgetDeks(tenantId);
          rows.forgetTenant(tenantId);
        }
        if (victims.length < candidates.length || candidates.length < batchSize) return destroyed;
      }
    },
  };
}
