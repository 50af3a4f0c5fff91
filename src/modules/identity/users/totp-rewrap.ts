import type { Kysely } from 'kysely';
import type { VersionBinding } from '../../../crypto/envelope.ts';
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
