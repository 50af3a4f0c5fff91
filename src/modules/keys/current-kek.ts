import type { Transaction } from 'kysely';
import type { Keyring, Sealer } from '../../crypto/keyring.ts';
import { fail } from '../../errors/index.ts';
import { onPostgres } from '../../storage/database.ts';
import type { Database } from '../../storage/schema.ts';

/** The sealer of a write, and the proof, inside its transaction, that its KEK is still the tenant's current one. */
export interface CurrentKek {
  seal: Sealer;
  /** Call inside the write's transaction before it commits: refuses if another node rotated the KEK meanwhile. */
  assertCurrent(trx: Transaction<Database>): Promise<void>;
}

/** Thrown by assertCurrent; `withCurrentKek` answers it by sealing again under the new version. */
class KekChanged extends Error {}

const ATTEMPTS = 3;

/**
 * Runs a write that seals a value under the tenant's current KEK, proven current inside the
 * write's own transaction. Each process caches the current KEK version; after `keys rotate` on
 * another node this one would go on wrapping data keys under the old version, which the rewrap
 * then retires and deletes: values written that way could never be opened again. The proof reads
 * the tenant's version in the write's transaction (FOR SHARE on PostgreSQL, so a rotation's UPDATE
 * of that row waits for the write to commit, and the rewrap that follows sees its row); a stale
 * version drops the cached state and the write runs again under the new key.
 *
 * @example
 * await withCurrentKek(keyring, tenantId, ({ seal, assertCurrent }) => db.transaction().execute(async (trx) => {
 *   await assertCurrent(trx);
 *   const sealed = seal(binding, plaintext);
 *   await trx.insertInto('secret_versions').values({ ...row, kek_version: sealed.kekVersion }).execute();
 * }));
 */
export async function withCurrentKek<T>(keyring: Pick<Keyring, 'sealerFor' | 'invalidate'>, tenantId: string, write: (kek: CurrentKek) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const seal = await keyring.sealerFor(tenantId);
    try {
      return await write({
        seal,
        async assertCurrent(trx) {
          let query = trx.selectFrom('tenants').select('kek_version').where('id', '=', tenantId);
          if (onPostgres(trx)) query = query.forShare();
          const row = await query.executeTakeFirst();
          if (row && Number(row.kek_version) !== seal.kekVersion) throw new KekChanged();
        },
      });
    } catch (err) {
      if (!(err instanceof KekChanged)) throw err;
      keyring.invalidate(tenantId);
      if (attempt >= ATTEMPTS) fail('KEY_OPERATION_CONFLICT', 'the tenant key changed during the write three times; try again');
    }
  }
}
