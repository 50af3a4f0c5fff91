import type { VersionBinding } from '../../crypto/envelope.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail, isKeyholdError } from '../../errors/index.ts';

/** A version's row as stored: its ciphertext and wrapped data key are gone once it is destroyed. */
export interface SealedVersion {
  version: number;
  ciphertext: Uint8Array | null;
  wrapped_dek: Uint8Array | null;
  destroyed_at: number | null;
}

/** The ciphertext and wrapped data key of a version, or VERSION_DESTROYED. */
export function sealedParts(row: SealedVersion): { ciphertext: Uint8Array; wrappedDek: Uint8Array } {
  if (row.destroyed_at !== null || !row.ciphertext || !row.wrapped_dek) fail('VERSION_DESTROYED', `version ${row.version} was destroyed`);
  return { ciphertext: row.ciphertext, wrappedDek: row.wrapped_dek };
}

/**
 * Opens a version's value. A data key under a retired KEK version makes it read the row once more
 * with `reload`: a rewrap that committed after the row was loaded (or cached) has moved that data key
 * under a newer KEK and deleted the old one, so the stored row opens. A row that still holds the same
 * wrapped key was really left under the retired version, and KEY_VERSION_RETIRED stands.
 */
export async function openVersion(keyring: Pick<Keyring, 'openValue'>, binding: VersionBinding, row: SealedVersion, reload: () => Promise<SealedVersion | undefined>): Promise<Buffer> {
  const { ciphertext, wrappedDek } = sealedParts(row);
  try {
    return await keyring.openValue(binding, ciphertext, wrappedDek);
  } catch (err) {
    if (!isKeyholdError(err) || err.code !== 'KEY_VERSION_RETIRED') throw err;
    const again = await reload();
    if (!again) throw err;
    const fresh = sealedParts(again);
    if (Buffer.compare(fresh.wrappedDek, wrappedDek) === 0) throw err;
    return keyring.openValue(binding, fresh.ciphertext, fresh.wrappedDek);
  }
}
