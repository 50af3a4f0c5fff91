import { createHmac } from 'node:crypto';
import type { RootKeyHolder } from '../../crypto/keyring.ts';
import { deriveFromRoot } from '../../crypto/root/root-key.ts';

/**
 * Keyed HMACs of identifiers that could themselves be sensitive (a username or client id that does
 * not exist may be a mistyped password or a pasted secret), as Vault does: events stay
 * correlatable ("the same unknown name, 40 times") without holding the text. The key is derived
 * from the root key, so it exists only while unsealed.
 */
export function createIdentifierHasher(root: RootKeyHolder) {
  let key: Buffer | null = null;
  root.onSeal(() => {
    key?.fill(0);
    key = null;
  });
  return {
    hash(value: string): string {
      key ??= deriveFromRoot(root.rootKey(), 'audit-identifiers');
      return `hmac-sha256:${createHmac('sha256', key).update(value, 'utf8').digest('hex').slice(0, 32)}`;
    },
  };
}

export type IdentifierHasher = ReturnType<typeof createIdentifierHasher>;
