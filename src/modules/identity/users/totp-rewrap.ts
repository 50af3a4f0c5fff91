import type { Kysely } from 'kysely';
import type { VersionBinding } from '../../../crypto/envelope.ts';
import { fail } from '../../../errors/index.ts';
import type { Database } from '../../../storage/schema.ts';
import { decodeSealedTotp, encodeSealedTotp, totpBinding } from './totp.ts';

type Rewrapper = (binding: VersionBinding, wrappedDek: Uint8Array) => { wrappedDek: Buffer; kekVersion: number } | null;
type Resealer = (binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array) => { ciphertext: Uint8Array; wrappedDek: Uint8Array };
type SealedColumn = 'totp_secret' | 'totp_pending_secret';

/** Times one user's column is read again after a concurrent change won its guard, before giving up. */
const MAX_ATTEMPTS = 3;

/**
 * Replaces each sealed secret in `columns` (in that order) by `next` of it, or leaves it when `next`
 * gives null. Each update is guarded by the blob it replaces; one that lost its guard (a rewrap or
 * re-encrypt on another connection, a re-enrolment) is read again and handled as it is now: under
 * PostgreSQL's read committed, a blob skipped instead could be another key operation's, under a KEK
 * the caller is about to retire. Returns how many secrets were replaced.
 */
async function replaceEach(db: Kysely<Database>, tenantId: string, columns: readonly SealedColumn[], next: (binding: VersionBinding, parts: { ciphertext: Buffer; wrappedDek: Buffer }) => Buffer | null): Promise<number> {
  let replaced = 0;
  for (const column of columns) {
    const rows = await db.selectFrom('users').select(['id', column]).where('tenant_id', '=', tenantId).where(column, 'is not', null).execute();
    for (const row of rows) {
      let blob = (row as Record<SealedColumn, Uint8Array | null>)[column];
      for (let attempt = 0; ; attempt++) {
        const parts = blob && decodeSealedTotp(blob);
        const replacement = parts ? next(totpBinding(tenantId, row.id), parts) : null;
        if (!blob || !replacement) break;
        if (attempt === MAX_ATTEMPTS) fail('KEY_OPERATION_CONFLICT', 'a second-factor secret kept changing while its key moved; run it again');
        const res = await db.updateTable('users').set({ [column]: replacement })
          .where('tenant_id', '=', tenantId).where('id', '=', row.id).where(column, '=', blob)
          .executeTakeFirst();
        if (Number(res.numUpdatedRows) === 1) {
          replaced++;
          break;
        }
        const now = await db.selectFrom('users').select(column).where('tenant_id', '=', tenantId).where('id', '=', row.id).executeTakeFirst();
        blob = (now as Record<SealedColumn, Uint8Array | null> | undefined)?.[column] ?? null;
      }
    }
  }
  return replaced;
}

/**
 * Moves every sealed TOTP secret of a tenant (confirmed or pending) to the current KEK: part of a
 * KEK rewrap, which must run it before old KEKs are retired, or enrolled users could no longer
 * sign in (nor confirm an enrolment in progress). Only the wrapped DEK changes; each row is
 * guarded by its old blob, and read again when it changed meanwhile. Returns how many secrets moved.
 */
export function rewrapTotpSecrets(db: Kysely<Database>, tenantId: string, rewrap: Rewrapper): Promise<number> {
  return replaceEach(db, tenantId, ['totp_secret', 'totp_pending_secret'], (binding, parts) => {
    const moved = rewrap(binding, parts.wrappedDek);
    return moved && encodeSealedTotp(parts.ciphertext, moved.wrappedDek);
  });
}

/**
 * Reseals every sealed TOTP secret of a tenant under a fresh DEK (the re-encrypt after a suspected
 * key compromise), whatever KEK it names: a rewrap may have moved an old data key under the new KEK.
 * Pending secrets first: a confirmation between the passes carries an already resealed secret into
 * the confirmed column, where the second pass reseals it again; the other order would leave one
 * under its old data key. Returns how many secrets were resealed.
 */
export function resealTotpSecrets(db: Kysely<Database>, tenantId: string, reseal: Resealer): Promise<number> {
  return replaceEach(db, tenantId, ['totp_pending_secret', 'totp_secret'], (binding, parts) => {
    const sealed = reseal(binding, parts.ciphertext, parts.wrappedDek);
    return encodeSealedTotp(sealed.ciphertext, sealed.wrappedDek);
  });
}
