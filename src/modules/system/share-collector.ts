import type { KeyObject } from 'node:crypto';
import { wipe } from '../../crypto/bytes.ts';
import { verifiedRootKey } from '../../crypto/root/root-key.ts';
import { combineShares, isKnownShare, parseShare } from '../../crypto/root/shamir/index.ts';
import { fail } from '../../errors/index.ts';
import type { SealConfig } from './system-meta-repository.ts';

/**
 * Unseal shares given one at a time towards the root key (to unseal, or to generate a new root
 * token): each checked against the shares this server was initialised with as it arrives, none
 * counted twice, and the reconstruction verified against the key check value, because the library
 * returns a wrong key, silently, from a tampered share. Shares are key material: overwritten when dropped.
 */
export function createShareCollector(config: SealConfig) {
  let pending: Buffer[] = [];
  const check = Buffer.from(config.check, 'base64');

  const collector = {
    get count(): number {
      return pending.length;
    },

    /** Counts one share; true once the threshold is reached. INVALID_SHARE (and not counted) otherwise. */
    add(text: string): boolean {
      const share = parseShare(text);
      if (config.shareDigests && !isKnownShare(share, config.shareDigests)) {
        wipe(share);
        fail('INVALID_SHARE', "this is not one of this server's unseal shares (mistyped, altered, or from another server); it did not count");
      }
      if (pending.some((p) => p[p.length - 1] === share[share.length - 1])) {
        wipe(share);
        fail('INVALID_SHARE', 'this share (or another with the same index) was already given');
      }
      pending.push(share);
      return pending.length >= config.threshold;
    },

    /**
     * Takes every share given so far (the count is 0 again at once, before any await) and
     * reconstructs the root key from them: the verified key, or null if they do not make it.
     */
    async combine(): Promise<KeyObject | null> {
      const shares = pending;
      pending = [];
      try {
        return verifiedRootKey(await combineShares(shares), check);
      } finally {
        for (const s of shares) wipe(s);
      }
    },

    /** Forgets the shares given so far, overwriting them. */
    drop(): void {
      for (const p of pending) wipe(p);
      pending = [];
    },
  };
  return collector;
}

export type ShareCollector = ReturnType<typeof createShareCollector>;
