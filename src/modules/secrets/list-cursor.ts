import type { KeyObject } from 'node:crypto';
import { aeadOpen, aeadSeal, toKeyObject } from '../../crypto/aead.ts';
import { bindFields, wipe } from '../../crypto/bytes.ts';
import type { RootKeyHolder } from '../../crypto/keyring.ts';
import { deriveFromRoot } from '../../crypto/root/root-key.ts';
import { fail, isKeyholdError } from '../../errors/index.ts';

/** Marks a sealed cursor; no secret name holds it, so `after` can still be a plain name. */
const MARK = '~';

/**
 * Page cursors of the secret listing that stop on a secret the caller may not list: the name is
 * sealed (AES-256-GCM under a root-derived key, bound to the tenant), so the cursor resumes the
 * scan there without telling the caller the name. Every node derives the same key, so any node
 * resumes a cursor another issued; the key is dropped on seal.
 */
export function createListCursors(root: RootKeyHolder) {
  let key: KeyObject | null = null;
  root.onSeal(() => {
    key = null;
  });
  const keyNow = () => {
    if (key) return key;
    const raw = deriveFromRoot(root.rootKey(), 'secret-list-cursor');
    key = toKeyObject(raw);
    wipe(raw);
    return key;
  };
  const aad = (tenantId: string) => bindFields('keyhold/secret-list-cursor/v1', tenantId);

  return {
    seal(tenantId: string, name: string): string {
      return MARK + aeadSeal(keyNow(), Buffer.from(name, 'utf8'), aad(tenantId)).toString('base64url');
    },

    /** The name to list after: `after` itself when it is a plain name, else what the cursor holds. */
    open(tenantId: string, after: string): string {
      if (!after.startsWith(MARK)) return after;
      try {
        return aeadOpen(keyNow(), Buffer.from(after.slice(MARK.length), 'base64url'), aad(tenantId)).toString('utf8');
      } catch (err) {
        if (isKeyholdError(err) && err.code === 'INTEGRITY_FAILURE') fail('VALIDATION_FAILED', 'after is not a page cursor this server issued for this tenant; list again from the start');
        throw err;
      }
    },
  };
}

export type ListCursors = ReturnType<typeof createListCursors>;
