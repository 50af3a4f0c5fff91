import type { Kysely } from 'kysely';
import { auditFrom, type AuditLog } from '../../audit/audit-log.ts';
import type { IdentifierHasher } from '../../audit/identifiers.ts';
import { fail } from '../../../errors/index.ts';
import { addressBlock } from '../../../platform/addresses.ts';
import type { Clock } from '../../../platform/clock.ts';
import type { Database } from '../../../storage/schema.ts';
import type { TenantContext } from '../../shared/context.ts';
import type { AttemptGuard } from './attempts.ts';
import type { PasswordHasher } from './passwords.ts';
import type { SessionService } from './session-service.ts';
import type { TotpService } from './totp-service.ts';
import { sessionActorOf } from './types.ts';
import type { UserCredentials, UserRepository } from './user-repository.ts';
import { signInContext, type RequestSource } from '../request-source.ts';

export interface LoginInput {
  tenant: string;
  username: string;
  password: string;
  totp?: string;
}

export interface LoginResult {
  token: string;
  sessionId: string;
  userId: string;
  username: string;
  tenant: string;
  mfaAt: string | null;
  expiresAt: string;
}

/** The one answer to every failed login, whatever failed. */
const INVALID = 'the tenant, username, password or one-time code is wrong';

/**
 * Password (+ TOTP when enrolled) login, and logout. A failed login looks the same whatever failed
 * (unknown tenant or user, disabled user, wrong password, missing, wrong or replayed code): one
 * code, one message, and one argon2 verification each, so neither the answer nor its timing tells
 * whether the account exists. Attempts are charged per address and per account before any check.
 */
export function createLoginService(deps: {
  db: Pick<Kysely<Database>, 'transaction'>;
  repo: UserRepository;
  tenants: { findByName(name: string): Promise<{ id: string; name: string } | null> };
  sessions: Pick<SessionService, 'issue' | 'revoke'>;
  totp: Pick<TotpService, 'useCode'>;
  passwords: PasswordHasher;
  guards: { account: AttemptGuard; accountTotal: AttemptGuard; ip: AttemptGuard };
  clock: Clock;
  audit: Pick<AuditLog, 'record' | 'appendInTx'>;
  identifiers: IdentifierHasher;
}) {
  const { db, repo, tenants, sessions, totp, passwords, guards, clock, audit, identifiers } = deps;

  /** A failed login is an event; the attempted username is kept only as a keyed hash (it may be a typed password). */
  async function refused(input: LoginInput, reason: string, source: RequestSource): Promise<void> {
    const tenant = await tenants.findByName(input.tenant);
    await audit.record([{
      tenantId: tenant?.id ?? null, actor: { type: 'anonymous', id: identifiers.hash(`${input.tenant}\u0000${input.username.toLowerCase()}`) },
      action: 'auth.login', resource: { type: 'user', id: null, name: null }, outcome: 'denied', reason, context: signInContext(source, {}),
    }]);
  }

  async function check(input: LoginInput): Promise<{ user: UserCredentials; tenantName: string; mfa: { at: number; epoch: number } | null } | null> {
    const tenant = await tenants.findByName(input.tenant);
    const user = tenant ? await repo.credentialsByName(tenant.id, input.username) : undefined;
    if (!user) {
      await passwords.burn(input.password);
      return null;
    }
    // Disabled users are verified too: refusing them early would answer faster than a wrong password.
    const passwordOk = await passwords.verify(user.password_hash, input.password);
    if (!passwordOk || user.disabled_at !== null) return null;
    if (user.totp_enabled !== 1) return { user, tenantName: tenant!.name, mfa: null };
    if (input.totp === undefined || !(await totp.useCode(user, input.totp))) return null;
    return { user, tenantName: tenant!.name, mfa: { at: clock.now(), epoch: user.factor_epoch } };
  }

  return {
    /** Starts a session, or throws INVALID_CREDENTIALS (or RATE_LIMITED, with the seconds to wait). */
    async login(input: LoginInput, source: RequestSource): Promise<LoginResult> {
      const username = input.username.toLowerCase();
      const block = addressBlock(source.sourceIp);
      const accountTotalKey = `login:acct:${input.tenant}\u0000${username}`;
      const accountKey = `${accountTotalKey}\u0000${block}`;
      identifiers.hash(''); // refuses with SEALED before any work: a sealed server signs no one in
      try {
        guards.ip.spend(`login:ip:${block}`);
        guards.account.spend(accountKey);
        guards.accountTotal.spend(accountTotalKey);
      } catch (err) {
        await refused(input, (err as { code?: string }).code ?? 'RATE_LIMITED', source);
        throw err;
      }
      const ok = await check({ ...input, username });
      // Started only while the account is as it was checked, under a lock a concurrent password change
      // or disable must wait for: a session from a password changed meanwhile must not outlive the change.
      const session = ok && await db.transaction().execute(async (trx) => (
        await repo.lockSignIn(trx, ok.user.tenant_id, ok.user.id, ok.user.password_hash)
          ? sessions.issue({ id: ok.user.id, tenantId: ok.user.tenant_id }, ok.mfa, trx) : null));
      if (!ok || !session) {
        await refused(input, 'INVALID_CREDENTIALS', source);
        fail('INVALID_CREDENTIALS', INVALID);
      }
      guards.account.forgive(accountKey);
      try {
        await audit.record([{
          tenantId: ok.user.tenant_id, actor: { type: 'user', id: ok.user.id }, action: 'auth.login', resource: { type: 'user', id: ok.user.id, name: ok.user.username },
          outcome: 'allowed', context: signInContext(source, { sessionId: session.id, secondFactor: ok.mfa === null ? 'none' : 'totp' }, session.id),
        }]);
      } catch (err) {
        await sessions.revoke(session.id, ok.user.id); // fail closed: no unaudited session survives
        throw err;
      }
      return {
        token: session.token,
        sessionId: session.id,
        userId: ok.user.id,
        username: ok.user.username,
        tenant: ok.tenantName,
        mfaAt: session.mfaAt === null ? null : new Date(session.mfaAt).toISOString(),
        expiresAt: new Date(session.expiresAt).toISOString(),
      };
    },

    /**
     * Ends the session the request came with. The revocation and its event commit in one
     * transaction: if the event cannot be written (AUDIT_UNAVAILABLE) the session stays as it was,
     * so no session ends without an event saying who ended it (fail closed). Session lookups are
     * not cached, so unlike a token revocation there is nothing to forget after the commit.
     */
    async logout(ctx: TenantContext): Promise<void> {
      const actor = sessionActorOf(ctx);
      await db.transaction().execute(async (trx) => {
        await sessions.revoke(actor.sessionId, actor.userId, trx);
        await audit.appendInTx(trx, [{ ...auditFrom(ctx), action: 'auth.logout', resource: { type: 'user', id: actor.userId, name: ctx.actor.name }, outcome: 'allowed' }]);
      });
    },
  };
}

export type LoginService = ReturnType<typeof createLoginService>;
