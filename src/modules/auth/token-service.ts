import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { randomToken } from '../../crypto/bytes.ts';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import type { Executor } from '../../storage/database.ts';

/** Who a token speaks for. Root tokens (tenantId null) may act in any tenant. */
export interface Principal {
  tokenId: string;
  kind: 'root' | 'tenant-admin';
  tenantId: string | null;
  name: string;
  expiresAt: number | null;
}

const TOKEN_PREFIX = 'kh_';
/** How long a positive lookup is trusted before the database is asked again (revocation on other nodes). */
const CACHE_TTL_MS = 5_000;

/** Tokens are 256-bit random strings; a plain SHA-256 is enough to store them (no guessing to slow down). */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/**
 * Bearer tokens: issued once (only the hash is stored), looked up per request through a short
 * cache, revoked by id. The identity issue builds users and machine identities on top of this.
 */
export function createTokenService(deps: { db: Kysely<Database>; clock: Clock }) {
  const { db, clock } = deps;
  const cache = new Map<string, { principal: Principal; until: number }>();

  return {
    async issue(opts: { tenantId: string | null; kind: Principal['kind']; name: string; ttlMs?: number }, executor: Executor = db) {
      const token = TOKEN_PREFIX + randomToken(32);
      const now = clock.now();
      const id = newId();
      await executor.insertInto('tokens').values({
        id, tenant_id: opts.tenantId, token_hash: hashToken(token), name: opts.name, kind: opts.kind,
        created_at: now, expires_at: opts.ttlMs ? now + opts.ttlMs : null, revoked_at: null,
      }).execute();
      return { id, token };
    },

    /** Resolves a presented token; null for unknown, expired or revoked (the caller answers one way for all). */
    async authenticate(token: string): Promise<Principal | null> {
      if (!token.startsWith(TOKEN_PREFIX) || token.length > 100) return null;
      const hash = hashToken(token);
      const now = clock.now();
      const hit = cache.get(hash);
      if (hit && hit.until > now && (hit.principal.expiresAt === null || hit.principal.expiresAt > now)) return hit.principal;
      cache.delete(hash);
      const row = await db.selectFrom('tokens').select(['id', 'tenant_id', 'kind', 'name', 'expires_at', 'revoked_at'])
        .where('token_hash', '=', hash).executeTakeFirst();
      if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now)) return null;
      const principal: Principal = {
        tokenId: row.id, kind: row.kind as Principal['kind'], tenantId: row.tenant_id, name: row.name, expiresAt: row.expires_at,
      };
      if (cache.size > 10_000) cache.clear();
      cache.set(hash, { principal, until: now + CACHE_TTL_MS });
      return principal;
    },

    async revoke(tokenId: string, tenantId: string | null) {
      let q = db.updateTable('tokens').set({ revoked_at: clock.now() }).where('id', '=', tokenId).where('revoked_at', 'is', null);
      q = tenantId === null ? q : q.where('tenant_id', '=', tenantId);
      const res = await q.executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) fail('TOKEN_NOT_FOUND', 'no live token with that id');
      for (const [hash, entry] of cache) if (entry.principal.tokenId === tokenId) cache.delete(hash);
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
