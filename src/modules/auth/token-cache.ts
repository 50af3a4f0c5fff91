import type { Principal } from '../identity/principal.ts';

/** Entries past this many are all dropped at once (a bound, not an LRU: live tokens are simply read again). */
const MAX_ENTRIES = 10_000;

/**
 * Live tokens' principals by token hash, for the lookup on every request. Indexed by credential id
 * and by principal id too, so dropping one revoked token or every token of a disabled identity costs
 * one lookup, not a scan: messages from other nodes ask for that on every change, and anyone who can
 * NOTIFY on the database can send them.
 */
export function createTokenCache() {
  const byHash = new Map<string, { principal: Principal; until: number }>();
  const byCredential = new Map<string, string>();
  const byPrincipal = new Map<string, Set<string>>();

  function remove(hash: string): void {
    const entry = byHash.get(hash);
    if (!entry) return;
    byHash.delete(hash);
    const { credentialId, id } = entry.principal;
    if (byCredential.get(credentialId) === hash) byCredential.delete(credentialId);
    const hashes = byPrincipal.get(id);
    hashes?.delete(hash);
    if (hashes?.size === 0) byPrincipal.delete(id);
  }

  function clear(): void {
    byHash.clear();
    byCredential.clear();
    byPrincipal.clear();
  }

  return {
    get: (hash: string) => byHash.get(hash),
    set(hash: string, principal: Principal, until: number): void {
      if (byHash.size >= MAX_ENTRIES) clear();
      remove(hash);
      byHash.set(hash, { principal, until });
      byCredential.set(principal.credentialId, hash);
      let hashes = byPrincipal.get(principal.id);
      if (!hashes) byPrincipal.set(principal.id, (hashes = new Set()));
      hashes.add(hash);
    },
    delete: remove,
    forgetCredential(credentialId: string): void {
      const hash = byCredential.get(credentialId);
      if (hash !== undefined) remove(hash);
    },
    forgetPrincipal(principalId: string): void {
      for (const hash of [...(byPrincipal.get(principalId) ?? [])]) remove(hash);
    },
    clear,
    get size() {
      return byHash.size;
    },
  };
}
