import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import { createSecretRepository } from './secret-repository.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import type { SealedRowCache } from './sealed-row-cache.ts';

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Crypto-shreds versions superseded longer ago than the rollback window: their data key is
 * deleted, so the ciphertext in this database can never be opened again. Never the current one,
 * decided under the label row's lock (a rollback may make a chosen version current again).
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
        const victims = candidates.filter((r) => r.current_version !== r.version)
          // One lock order for every sweeper: two nodes sweeping at once must not deadlock.
          .sort((a, b) => compare(a.secret_id, b.secret_id) || compare(a.environment_id, b.environment_id));
        if (victims.length === 0) return destroyed;
        const shredded = await db.transaction().execute(async (trx) => {
          const r = createSecretRepository(trx);
          let n = 0;
          for (const v of victims) {
            // Decided again under the label row's lock (as destroy does): a rollback that committed since
            // the choice above made this version current, and a version current again is never shredded.
            const state = await r.lockState(v.secret_id, v.environment_id);
            if (!state || state.current_version === v.version || state.pending_version === v.version) continue;
            if (await r.shredSuperseded(v.tenant_id, v.id, now - rollbackWindowMs, now)) {
              await r.clearDestroyedLabels(v.secret_id, v.environment_id, v.version);
              n++;
            }
          }
          return n;
        });
        destroyed += shredded;
        if (shredded === 0) return destroyed;
        for (const tenantId of new Set(victims.map((v) => v.tenant_id))) {
          keyring.forgetDeks(tenantId);
          rows.forgetTenant(tenantId);
        }
        if (victims.length < candidates.length || candidates.length < batchSize) return destroyed;
      }
    },
  };
}
