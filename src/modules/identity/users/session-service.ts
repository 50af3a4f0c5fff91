import type { Kysely } from 'kysely';
import type { IdentitySettings } from '../../../config/config.ts';
import { randomToken } from '../../../crypto/bytes.ts';
import type { Clock } from '../../../platform/clock.ts';
import { newId } from '../../../platform/ids.ts';
import type { DialectName, Executor } from '../../../storage/database.ts';
import type { Database } from '../../../storage/schema.ts';
import { hashToken } from '../../auth/token-service.ts';
import { principalOf, type CredentialLookup, type CredentialSource, type Principal } from '../principal.ts';

/** User session tokens; root and machine tokens use `kh_`. */
export const SESSION_PREFIX = 'khs_';
/**
 * last_seen_at is written at most this often, so a busy session costs one write a minute, not one
 * per request. The idle clock therefore runs up to this much early, never late. With an idle time
 * of two minutes or less, it is written at most every half idle time instead: a session used more
 * often than that never idles out, whatever KEYHOLD_SESSION_IDLE says.
 */
export const TOUCH_INTERVAL_MS = 60_000;

export interface IssuedSession {
  id: string;
  token: string;
  expiresAt: number;
  mfaAt: number | null;
}

/**
 * Sessions of human users: a random bearer token shown once (only its SHA-256 is stored), an idle
 * expiry that slides with use, an absolute expiry from login, and the time a second factor was
 * last verified in it. Every request asks the database (no cache), so revocation and disabling
 * take effect at once on every node.
 */
export function createSessionService(deps: {
  db: Kysely<Database>; dialect: DialectName; clock: Clock; settings: Pick<IdentitySettings, 'sessionIdleMs' | 'sessionAbsoluteMs'>;
}) {
  const { db, dialect, clock, settings } = deps;
  const touchEveryMs = Math.min(TOUCH_INTERVAL_MS, Math.floor(settings.sessionIdleMs / 2));

  const service = {
    prefix: SESSION_PREFIX,

    /**
     * Starts a session for a user; `mfa` is set when the login verified a second factor: when, and
     * under which factor epoch (a reset of the factor meanwhile makes it count for nothing).
     */
    async issue(user: { id: string; tenantId: string }, mfa: { at: number; epoch: number } | null, executor: Executor = db): Promise<IssuedSession> {
      const mfaAt = mfa?.at ?? null;
      const token = SESSION_PREFIX + randomToken(32);
      const now = clock.now();
      const id = newId();
      const expiresAt = now + settings.sessionAbsoluteMs;
      await executor.insertInto('sessions').values({
        id, tenant_id: user.tenantId, user_id: user.id, token_hash: hashToken(token),
        created_at: now, last_seen_at: now, expires_at: expiresAt, mfa_at: mfaAt, mfa_epoch: mfa?.epoch ?? null, revoked_at: null,
      }).execute();
      return { id, token, expiresAt, mfaAt };
    },

    /** A presented session token: live (its last use noted), revoked, expired or idle too long, its user disabled, or unknown. */
    async lookup(token: string): Promise<CredentialLookup> {
      if (!token.startsWith(SESSION_PREFIX) || token.length > 100) return null;
      const now = clock.now();
      const row = await db.selectFrom('sessions')
        .innerJoin('users', (j) => j.onRef('users.id', '=', 'sessions.user_id').onRef('users.tenant_id', '=', 'sessions.tenant_id'))
        .select(['sessions.id', 'sessions.tenant_id', 'sessions.user_id', 'sessions.last_seen_at', 'sessions.expires_at',
          'sessions.mfa_at', 'sessions.mfa_epoch', 'sessions.revoked_at', 'users.username', 'users.disabled_at', 'users.factor_epoch'])
        .where('sessions.token_hash', '=', hashToken(token))
        .executeTakeFirst();
      if (!row) return null;
      const state = row.revoked_at !== null ? 'revoked' : row.disabled_at !== null ? 'disabled'
        : row.expires_at <= now || row.last_seen_at + settings.sessionIdleMs <= now ? 'expired' : null;
      if (state !== null) return { dead: { credentialId: row.id, tenantId: row.tenant_id, state } };
      if (now - row.last_seen_at >= touchEveryMs) {
        await db.updateTable('sessions').set({ last_seen_at: now })
          .where('id', '=', row.id).where('revoked_at', 'is', null).where('last_seen_at', '<', now).execute();
      }
      return {
        principal: {
          type: 'user', id: row.user_id, tenantId: row.tenant_id, name: row.username,
          // A second factor verified under a factor an admin has since reset counts for nothing.
          credentialId: row.id, mfaAt: row.mfa_epoch === row.factor_epoch ? row.mfa_at : null, expiresAt: row.expires_at,
        },
      };
    },

    /** Resolves a session token; null when unknown, revoked, idle too long, past its absolute expiry, or its user is disabled. */
    async authenticate(token: string): Promise<Principal | null> {
      return principalOf(await service.lookup(token));
    },

    /** Ends one session of a user (logout). Returns whether a live session was ended. */
    async revoke(sessionId: string, userId: string, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('sessions').set({ revoked_at: clock.now() })
        .where('id', '=', sessionId).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /** Ends every live session of a user, except `keep` (the session changing its own password). */
    async revokeAllFor(userId: string, keep: string | null, executor: Executor = db): Promise<number> {
      let q = executor.updateTable('sessions').set({ revoked_at: clock.now() }).where('user_id', '=', userId).where('revoked_at', 'is', null);
      if (keep !== null) q = q.where('id', '!=', keep);
      return Number((await q.executeTakeFirst()).numUpdatedRows);
    },

    /** Records a second factor verified just now, under factor epoch `epoch`, in this session (step-up, TOTP confirmation). */
    async markMfa(sessionId: string, userId: string, at: number, epoch: number, executor: Executor = db): Promise<void> {
      await executor.updateTable('sessions').set({ mfa_at: at, mfa_epoch: epoch })
        .where('id', '=', sessionId).where('user_id', '=', userId).where('revoked_at', 'is', null).execute();
    },

    /**
     * Deletes up to `limit` sessions whose absolute expiry or revocation (logout, password change,
     * disabled user) is at or before `deadBefore`, in one statement, and returns how many. A
     * session that only went idle goes once its absolute expiry passes. On PostgreSQL, rows
     * another sweeper has picked are skipped rather than waited for (no blocking, no deadlock).
     */
    async purgeDead(deadBefore: number, limit: number): Promise<number> {
      let victims = db.selectFrom('sessions').select('id')
        .where((eb) => eb.or([eb('expires_at', '<=', deadBefore), eb('revoked_at', '<=', deadBefore)]))
        .limit(limit);
      if (dialect === 'postgres') victims = victims.forUpdate().skipLocked();
      const res = await db.deleteFrom('sessions').where('id', 'in', victims).executeTakeFirst();
      return Number(res.numDeletedRows);
    },
  } satisfies CredentialSource & Record<string, unknown>;
  return service;
}

export type SessionService = ReturnType<typeof createSessionService>;
