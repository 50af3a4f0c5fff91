import type { Clock } from '../../platform/clock.ts';

/** What the hot read needs: metadata for the policy decision and the still-sealed value. Never plaintext. */
export interface SealedRow {
  secret_id: string;
  name: string;
  classification: string;
  owner: string;
  tags: string;
  version: number;
  ciphertext: Uint8Array | null;
  wrapped_dek: Uint8Array | null;
  created_at: number;
  destroyed_at: number | null;
}

export interface SealedRowCache {
  get(tenantId: string, environmentId: string, name: string, label: string): SealedRow | undefined;
  /** Taken before reading the database; `set` with a stale stamp is ignored (a change landed meanwhile). */
  stamp(tenantId: string, name: string): number;
  set(tenantId: string, environmentId: string, name: string, label: string, row: SealedRow, stamp: number): void;
  /** After any change to a secret (value, labels, metadata, deletion) in this process. */
  forgetSecret(tenantId: string, name: string): void;
  /** After tenant-wide changes (KEK rewrap, retention sweep). */
  forgetTenant(tenantId: string): void;
  clear(): void;
}

/**
 * Labelled reads served from memory: the row as stored (ciphertext and wrapped DEK, still sealed),
 * so the database is not asked on every read. Every change made through this process forgets the
 * affected entries before it returns; changes made by another process (a second node on the same
 * PostgreSQL) are seen once `ttlMs` has passed. Decryption and authorization still run per read.
 */
export function createSealedRowCache(opts: { clock: Clock; ttlMs: number; maxEntries: number }): SealedRowCache {
  const { clock, ttlMs, maxEntries } = opts;
  // tenant → secret name → "env\0label" → entry: forgetting a secret or a tenant is one delete.
  const tenants = new Map<string, Map<string, Map<string, { row: SealedRow; until: number }>>>();
  let size = 0;
  // Bumped by every forget; a read that began before the bump must not store what it read.
  const generations = new Map<string, number>();
  let tenantWide = 0;
  const stampOf = (tenantId: string, name: string) => tenantWide * 1_000_003 + (generations.get(`${tenantId}\u0000${name}`) ?? 0);

  return {
    stamp: stampOf,
    get(tenantId, environmentId, name, label) {
      const entry = tenants.get(tenantId)?.get(name)?.get(`${environmentId}\u0000${label}`);
      if (!entry) return undefined;
      if (entry.until > clock.now()) return entry.row;
      tenants.get(tenantId)!.get(name)!.delete(`${environmentId}\u0000${label}`);
      size--;
      return undefined;
    },
    set(tenantId, environmentId, name, label, row, stamp) {
      if (stamp !== stampOf(tenantId, name)) return;
      if (size >= maxEntries) {
        tenants.clear();
        size = 0;
      }
      let secrets = tenants.get(tenantId);
      if (!secrets) tenants.set(tenantId, (secrets = new Map()));
      let labels = secrets.get(name);
      if (!labels) secrets.set(name, (labels = new Map()));
      const key = `${environmentId}\u0000${label}`;
      if (!labels.has(key)) size++;
      labels.set(key, { row, until: clock.now() + ttlMs });
    },
    forgetSecret(tenantId, name) {
      const key = `${tenantId}\u0000${name}`;
      generations.set(key, (generations.get(key) ?? 0) + 1);
      if (generations.size > 100_000) {
        generations.clear();
        tenantWide++;
      }
      const labels = tenants.get(tenantId)?.get(name);
      if (!labels) return;
      size -= labels.size;
      tenants.get(tenantId)!.delete(name);
    },
    forgetTenant(tenantId) {
      tenantWide++;
      for (const labels of tenants.get(tenantId)?.values() ?? []) size -= labels.size;
      tenants.delete(tenantId);
    },
    clear() {
      tenantWide++;
      tenants.clear();
      size = 0;
    },
  };
}
