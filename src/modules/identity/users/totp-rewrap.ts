import type { Kysely } from 'kysely';
import type { VersionBinding } from '../../../crypto/envelope.ts';
import type { Database } from '../../../storage/schema.ts';
import { decodeSealedTotp, encodeSealedTotp, totpBinding } from './totp.ts';

type Rewrapper = (binding: VersionBinding, wrappedDek: Uint8Array) => { wrappedDek: Buffer; kekVersion: number } | null;

/**
 * Moves every sealed TOTP secret of a tenant to the current KEK: part of a KEK rewrap, which must
 * run it before old KEKs are retired, or enrolled users could no longer sign in. Only the wrapped
 * DEK changes; each row is guarded by its old blob, so a concurrent re-enrolment wins. Returns how
 * many secrets moved.
 */
export async function rewrapTotpSecrets(db: Kysely<Database>, tenantId: string, rewrap: Rewrapper): Promise<number> {
  const rows = await db.selectFrom('users').select(['id', 'totp_secret'])
    .where('tenant_id', '=', tenantId).where('totp_secret', 'is not', null).execute();
  let moved = 0;
  for (const row of rows) {
    const parts = decodeSealedTotp(row.totp_secret!);
    if (!parts) continue;
    const next = rewrap(totpBinding(tenantId, row.id), parts.wrappedDek);
    if (!next) continue;
    const res = await db.updateTable('users').set({ totp_secret: encodeSealedTotp(parts.ciphertext, next.wrappedDek) })
      .where('tenant_id', '=', tenantId).where('id', '=', row.id).where('totp_secret', '=', row.totp_secret)
      .executeTakeFirst();
    moved += Number(res.numUpdatedRows);
  }
  return moved;
}
