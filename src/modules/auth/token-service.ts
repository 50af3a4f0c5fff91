import { hash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { randomToken } from '../../crypto/bytes.ts';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import type { DialectName, Executor } from '../../storage/database.ts';
import { principalOf, type CredentialLookup, type CredentialSource, type Principal } from '../identity/principal.ts';
import type { InvalidationBus } from '../invalidation/bus.ts';
import { createTokenCache } from './token-cache.ts';

/** Root and machine access tokens share this prefix; user sessions have their own. */
export const TOKEN_PREFIX = 'kh_';
/** How long a positive lookup is trusted before the database is asked again (revocation on other nodes). */
export const TOKEN_CACHE_TTL_MS = 5_000;

/** Tokens are 256-bit random strings; a plain SHA-256 is enough to store them (no guessing to slow down). */
export function hashToken(token: string): string {
  // One-shot crypto.hash: the same digest as createHash().update().digest(), without a Hash object per request.
  return hash('sha256', token, 'base64url');
}

export interface IssueTokenOptions {
  tenantId: string | null;
  kind: 'root' | 'machine';
  /** Machine tokens: the machine identity they speak for. */
  principalId?: string;
  /** The principal's name as whoami and policies (`principal.name`) see it: a machine token carries its identity's own name. */
  name: string;
  /** Omitted: the token never expires (root tokens only). Zero or less: it is issued already expired. */
  ttlMs?: number;
  /** Binds the token to one environment of its tenant (automation runs): it admits nothing elsewhere. */
  environment?: string;
}

/**
 * Bearer tokens for root and machine identities: issued once (only the hash is stored), looked up
 * per request through a short cache, revoked one by one or all at once for an identity. Revocation
 * in this process takes effect at once; other nodes hear of it as it commits (`peers`), and see it
 * within TOKEN_CACHE_TTL_MS whatever happens to that message. Dead machine
 * tokens are deleted by the credential sweep; a deleted token answers like a revoked one.
 */
export function createTokenService(deps: {
  db: Kysely<Database>; dialect: DialectName; clock: Clock;
  /** Other nodes: told of revocations made here once they commit, and heard of theirs (SPEC §13). */
  peers?: Pick<InvalidationBus, 'publish' | 'subscribe'>;
}) {
  const { db, dialect, clock, peers } = deps;
  const cache = createTokenCache();
  /**
   * Moves on every forget. A lookup caches what it read only if no forget ran while it read: a
   * revoke that committed (and forgot) between the read and its answer must not leave the token
   * cached as live for TOKEN_CACHE_TTL_MS.
   */
  let forgets = 0;

  const wellFormed = (token: string) => token.startsWith(TOKEN_PREFIX) && token.length <= 100;

  /** The cached principal of a token hash, if its cache entry and the token itself are both still live at `now`. */
  function liveCached(tokenHash: string, now: number): Principal | undefined {
    const hit = cache.get(tokenHash);
    return hit && hit.until > now && (hit.principal.expiresAt === null || hit.principal.expiresAt > now) ? hit.principal : undefined;
  }

  /** Drops tokens from the cache; a lookup in flight meanwhile will not cache what it read. */
  function forget(drop: () => void): void {
    forgets++;
    drop();
  }
  const forgetToken = (tokenId: string) => forget(() => cache.forgetCredential(tokenId));
  const forgetPrincipal = (principalId: string) => forget(() => cache.forgetPrincipal(principalId));

  peers?.subscribe({
    onMessage(m) {
      if (m.kind === 'token') forgetToken(m.id);
      else if (m.kind === 'principal') forgetPrincipal(m.id);
    },
    onGap: () => forget(() => cache.clear()),
  });

  const service = {
    prefix: TOKEN_PREFIX,

    async issue(opts: IssueTokenOptions, executor: Executor = db) {
      const token = TOKEN_PREFIX + randomToken(32);
      const now = clock.now();
      const id = newId();
      // Only an absent TTL means no expiry (root tokens): a TTL that came to zero is no time left, not forever.
      const expiresAt = opts.ttlMs === undefined ? null : now + opts.ttlMs;
      await executor.insertInto('tokens').values({
        id, tenant_id: opts.tenantId, token_hash: hashToken(token), name: opts.name, kind: opts.kind,
        principal_id: opts.principalId ?? null, environment: opts.environment ?? null, created_at: now, expires_at: expiresAt, revoked_at: null,
      }).execute();
      return { id, token, expiresAt };
    },

    /** A live token's principal from the lookup cache; undefined if the database must be asked. */
    cached(token: string): Principal | undefined {
      return wellFormed(token) ? liveCached(hashToken(token), clock.now()) : undefined;
    },

    /** A presented token: live (cached for TOKEN_CACHE_TTL_MS), revoked or expired (named, for the refusal's event), or unknown. */
    async lookup(token: string): Promise<CredentialLookup> {
      if (!wellFormed(token)) return null;
      const tokenHash = hashToken(token);
      const now = clock.now();
      const hit = liveCached(tokenHash, now);
      if (hit) return { principal: hit };
      cache.delete(tokenHash);
      const epoch = forgets;
      const row = await db.selectFrom('tokens').select(['id', 'tenant_id', 'kind', 'name', 'principal_id', 'environment', 'expires_at', 'revoked_at'])
        .where('token_hash', '=', tokenHash).executeTakeFirst();
      if (!row) return null;
      if (row.revoked_at !== null) return { dead: { credentialId: row.id, tenantId: row.tenant_id, state: 'revoked' } };
      if (row.expires_at !== null && row.expires_at <= now) return { dead: { credentialId: row.id, tenantId: row.tenant_id, state: 'expired' } };
      const principal: Principal = {
        type: row.kind === 'root' ? 'root' : 'machine',
        id: row.kind === 'root' ? row.id : row.principal_id!,
        tenantId: row.tenant_id,
        name: row.name,
        credentialId: row.id,
        mfaAt: null,
        expiresAt: row.expires_at,
        ...(row.environment !== null ? { boundEnvironment: row.environment } : {}),
      };
      if (epoch === forgets) {
        cache.set(tokenHash, principal, now + TOKEN_CACHE_TTL_MS);
      }
      return { principal };
    },

    /** Resolves a presented token; null for unknown, expired or revoked (the caller answers one way for all). */
    async authenticate(token: string): Promise<Principal | null> {
      return principalOf(await service.lookup(token));
    },

    /**
     * Revokes one live token. `tenantId` scopes the lookup (null: root may revoke any). Returns the token's tenant.
     * An expired token is not live: it stays recorded as expired (its later refusals say so), and this is TOKEN_NOT_FOUND.
     */
    async revoke(tokenId: string, tenantId: string | null, executor: Executor = db): Promise<{ tenantId: string | null }> {
      const now = clock.now();
      let q = executor.updateTable('tokens').set({ revoked_at: now }).where('id', '=', tokenId).where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
      if (tenantId !== null) q = q.where('tenant_id', '=', tenantId);
      const row = await q.returning('tenant_id').executeTakeFirst();
      if (!row) fail('TOKEN_NOT_FOUND', 'no live token with that id');
      forgetToken(tokenId);
      // Inside a transaction the other nodes hear of it from forgetToken, once it has committed.
      if (executor === db) peers?.publish({ kind: 'token', id: tokenId });
      return { tenantId: row.tenant_id };
    },

    /** Drops a token from the lookup cache, here and on the other nodes; call after the transaction that revoked it commits. */
    forgetToken(tokenId: string): void {
      forgetToken(tokenId);
      peers?.publish({ kind: 'token', id: tokenId });
    },

    /** Revokes every live token of a machine identity (disabling it must kill its tokens at once). */
    async revokeAllFor(principalId: string, executor: Executor = db) {
      await executor.updateTable('tokens').set({ revoked_at: clock.now() })
        .where('principal_id', '=', principalId).where('revoked_at', 'is', null).execute();
      forgetPrincipal(principalId);
      // Inside a transaction the caller runs this again once it has committed (machine-service.ts): that pass tells the other nodes.
      if (executor === db) peers?.publish({ kind: 'principal', id: principalId });
    },

    /**
     * Deletes up to `limit` machine tokens that expired or were revoked at or before `deadBefore`
     * (one statement, its own transaction) and returns how many. Root tokens are kept: they never
     * expire, and a revoked one is a record of who held the keys to everything. A live token has
     * neither time at or before a past cutoff, so it never matches. On PostgreSQL, rows another
     * sweeper has already picked are skipped rather than waited for, so two nodes sweeping at
     * once neither block nor deadlock each other.
     */
    async purgeDead(deadBefore: number, limit: number): Promise<number> {
      let victims = db.selectFrom('tokens').select('id').where('kind', '=', 'machine')
        .where((eb) => eb.or([eb('expires_at', '<=', deadBefore), eb('revoked_at', '<=', deadBefore)]))
        .limit(limit);
      if (dialect === 'postgres') victims = victims.forUpdate().skipLocked();
      const gone = await db.deleteFrom('tokens').where('id', 'in', victims).returning('id').execute();
      // A missing row already authenticates as nothing. The cache may still hold a token revoked on
      // another node less than TOKEN_CACHE_TTL_MS ago (with a grace that short): dropping the swept ids
      // ends those here at once, as a revocation in this process would, and frees expired entries.
      if (gone.length > 0) {
        forget(() => {
          for (const r of gone) cache.forgetCredential(r.id);
        });
      }
      return gone.length;
    },
  } satisfies CredentialSource & Record<string, unknown>;
  return service;
}

export type TokenService = ReturnType<typeof createTokenService>;
