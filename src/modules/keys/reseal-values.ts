import type { Kysely, Transaction } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail } from '../../errors/index.ts';
import type { Database } from '../../storage/schema.ts';

type Resealer = Awaited<ReturnType<Keyring['resealerFor']>>;

interface SealedRow {
  id: string;
  secret_id: string;
  environment_id: string;
  version: number;
  ciphertext: Uint8Array | null;
  wrapped_dek: Uint8Array | null;
}

/** What a reseal reads of a row: where it lives (its binding) and its sealed value. */
const SEALED_COLUMNS = ['id', 'secret_id', 'environment_id', 'version', 'ciphertext', 'wrapped_dek'] as const;

/** How far a walk got: counts of what committed, for the audit trail when it stops part way. */
export interface ResealProgress {
  resealed: number;
  batches: number;
}

/** Times one row is read again after a concurrent change won its guard, before the walk gives up. */
const MAX_ROW_ATTEMPTS = 3;

/**
 * Re-seals every value of a tenant that still has a data key (every version, current, older and
 * pending) under a fresh DEK wrapped by the tenant's current KEK: the re-encrypt after a suspected
 * key compromise. The rows are walked in id order, in batches, each batch in its own transaction
 * with the events `onBatch` gives it, so the log accounts for every value that moved.
 *
 * Every row is resealed whatever key version it names: one under the current KEK may hold an old
 * data key a concurrent rewrap moved there. Rows written after the walk began have fresh data keys
 * already, so a row inserted behind the cursor needs nothing. Each update is guarded by the row's
 * wrapped DEK: a row a rewrap moved meanwhile is read again and resealed, a destroyed one stays so.
 */
export async function resealValues(
  deps: { db: Kysely<Database>; keyring: Pick<Keyring, 'resealerFor'> },
  tenantId: string,
  opts: { batchSize: number; progress: ResealProgress; onBatch(trx: Transaction<Database>, resealed: number, batch: number): Promise<void> },
): Promise<void> {
  const { db, keyring } = deps;
  let cursor = '';
  for (;;) {
    // The keys before the rows, as in a rewrap: loaded first, they open every row the batch reads.
    const reseal = await keyring.resealerFor(tenantId);
    const rows = await db.selectFrom('secret_versions').select(SEALED_COLUMNS)
      .where('tenant_id', '=', tenantId).where('wrapped_dek', 'is not', null).where('id', '>', cursor)
      .orderBy('id').limit(opts.batchSize).execute();
    if (rows.length === 0) return;
    cursor = rows.at(-1)!.id;
    const batch = opts.progress.batches + 1;
    const resealed = await db.transaction().execute(async (trx) => {
      let moved = 0;
      for (const row of rows) moved += await resealRow(trx, reseal, tenantId, row);
      await opts.onBatch(trx, moved, batch);
      return moved;
    });
    opts.progress.resealed += resealed;
    opts.progress.batches = batch;
  }
}

/** Reseals one row; 1 if it moved, 0 if it was destroyed meanwhile. */
async function resealRow(trx: Transaction<Database>, reseal: Resealer, tenantId: string, first: SealedRow): Promise<number> {
  let row: SealedRow | undefined = first;
  for (let attempt = 0; attempt < MAX_ROW_ATTEMPTS; attempt++) {
    if (!row || row.ciphertext === null || row.wrapped_dek === null) return 0;
    const binding = { tenantId, environmentId: row.environment_id, secretId: row.secret_id, version: row.version };
    const next = reseal(binding, row.ciphertext, row.wrapped_dek);
    const res = await trx.updateTable('secret_versions')
      .set({ ciphertext: next.ciphertext, wrapped_dek: next.wrappedDek, kek_version: next.kekVersion })
      .where('tenant_id', '=', tenantId).where('id', '=', row.id).where('wrapped_dek', '=', row.wrapped_dek)
      .executeTakeFirst();
    if (Number(res.numUpdatedRows) === 1) return 1;
    row = await trx.selectFrom('secret_versions').select(SEALED_COLUMNS)
      .where('tenant_id', '=', tenantId).where('id', '=', row.id).executeTakeFirst();
  }
  return fail('KEY_OPERATION_CONFLICT', 'a value kept changing while it was resealed; run the re-encrypt again');
}
