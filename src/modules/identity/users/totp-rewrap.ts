import type { Kysely } from 'kysely';
import type { VersionBinding } from '../../../crypto/envelope.ts';
import { fail } from '../../../errors/index.ts';
import type { Database } from '../../../storage/schema.ts';
import { decodeSealedTotp, encodeSealedTotp, totpBinding } from './totp.ts';

type Rewrapper = (binding: VersionBinding, wrappedDek: Uint8Array) => { wrappedDek: Buffer; kekVersion: number } | null;

/** The two columns that hold a sealed TOTP secret: the confirmed factor, and one being enrolled. */
const SEALED_COLUMNS = ['totp_secret', 'totp_pending_secret'] as const;

/**
 * Moves every sealed TOTP secret of a tenant (confirmed or pending) to the current KEK: part of a
 * KEK rewrap, which must run it before old KEKs are retired, or enrolled users could no longer
 * sign in (nor confirm an enrolment in progress). Only the wrapped DEK changes; each row is
 * guarded by its old blob, so a concurrent re-enrolment wins. Returns how many secrets moved.
 */
export async function rewrapTotpSecrets(db: Kysely<Database>, tenantId: string, rewrap: Rewrapper): Promise<number> {
  let moved = 0;
  for (const column of SEALED_COLUMNS) {
    const rows = await db.selectFrom('users').select(['id', column]).where('tenant_id', '=', tenantId).where(column, 'is not', null).execute();
    for (const row of rows) {
      const blob = (row as Record<typeof column, Uint8Array | null>)[column]!;
      const parts = decodeSealedTotp(blob);
      if (!parts) continue;
      const next = rewrap(totpBinding(tenantId, row.id), parts.wrappedDek);
      if (!next) continue;
      const res = await db.updateTable('users').set({ [column]: encodeSealedTotp(parts.ciphertext, next.wrappedDek) })
        .where('tenant_id', '=', tenantId).where('id', '=', row.id).where(column, '=', blob)
        .executeTakeFirst();
      moved += Number(res.numUpdatedRows);
    }
  }
  return moved;
}

type Resealer = (binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array) => { ciphertext: Uint8Array; wrappedDek: Uint8Array };

/** Times one user's column is read again after a concurrent change won its guard, before giving up. */
const MAX_RESEAL_ATTEMPTS = 3;

/**
 * Reseals every sealed TOTP secret of a tenant under a fresh DEK (the re-encrypt after a suspected
 * key compromise), whatever KEK it names: a rewrap may have moved an old data key under the new KEK.
 * Pending secrets first: a confirmation between the passes carries an already resealed secret into
 * the confirmed column, where the second pass reseals it again; the other order would leave one
 * under its old data key. Each update is guarded by the blob it replaces; a blob changed meanwhile
 * (a rewrap, a re-enrolment) is read again and resealed. Returns how many secrets were resealed.
 */
export async function resealTotpSecrets(db: Kysely<Database>, tenantId: string, reseal: Resealer): Promise<number> {
  let resealed = 0;
  for (const column of ['totp_pending_secret', 'totp_secret'] as const) {
    const rows = await db.selectFrom('users').select(['id', column]).where('tenant_id', '=', tenantId).where(column, 'is not', null).execute();
    for (const row of rows) {
      let blob = (row as Record<typeof column, Uint8Array | null>)[column];
      for (let attempt = 0; ; attempt++) {
        const parts = blob && decodeSealedTotp(blob);
        if (!blob || !parts) break;
        if (attempt === MAX_RESEAL_ATTEMPTS) fail('KEY_OPERATION_CONFLICT', 'a second-factor secret kept changing while it was resealed; run the re-encrypt again');
        const next = reseal(totpBinding(tenantId, row.id), parts.ciphertext, parts.wrappedDek);
        const res = await db.updateTable('users').set({ [column]: encodeSealedTotp(next.ciphertext, next.wrappedDek) })
          .where('tenant_id', '=', tenantId).where('id', '=', row.id).where(column, '=', blob)
          .executeTakeFirst();
        if (Number(res.numUpdatedRows) === 1) {
          resealed++;
          break;
        }
        const now = await db.selectFrom('users').select(column).where('tenant_id', '=', tenantId).where('id', '=', row.id).executeTakeFirst();
        blob = (now as Record<typeof column, Uint8Array | null> | undefined)?.[column] ?? null;
      }
    }
  }
  return resealed;
}
