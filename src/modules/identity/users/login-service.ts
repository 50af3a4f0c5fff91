import { fail } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import type { TenantContext } from '../../shared/context.ts';
import type { AttemptGuard } from './attempts.ts';
import type { PasswordHasher } from './passwords.ts';
import type { SessionService } from './session-service.ts';
import type { TotpService } from './totp-service.ts';
import { sessionActorOf } from './types.ts';
import type { UserCredentials, UserRepository } from './user-repository.ts';

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
  repo: UserRepository;
  tenants: { findByName(name: string): Promise<{ id: string; name: string } | null> };
  sessions: Pick<SessionService, 'issue' | 'revoke'>;
  totp: Pick<TotpService, 'useCode'>;
  passwords: PasswordHasher;
  guards: { account: AttemptGuard; ip: AttemptGuard };
  clock: Clock;
}) {
  const { repo, tenants, sessions, totp, passwords, guards, clock } = deps;

  async function check(input: LoginInput): Promise<{ user: UserCredentials; tenantName: string; mfaAt: number | null } | null> {
    const tenant = await tenants.findByName(input.tenant);
    const user = tenant ? await repo.credentialsByName(tenant.id, input.username) : undefined;
    if (!user) {
      await passwords.burn(input.password);
      return null;
    }
    // Disabled users are verified too: refusing them early would answer faster than a wrong password.
    const passwordOk = await passwords.verify(user.password_hash, input.password);
    if (!passwordOk || user.disabled_at !== null) return null;
    if (user.totp_enabled !== 1) return { user, tenantName: tenant!.name, mfaAt: null };
    if (input.totp === undefined || !(await totp.useCode(user, input.totp))) return null;
    return { user, tenantName: tenant!.name, mfaAt: clock.now() };
  }

  return {
    /** Starts a session, or throws INVALID_CREDENTIALS (or RATE_LIMITED, with the seconds to wait). */
    async login(input: LoginInput, source: { ip: string }): Promise<LoginResult> {
      const username = input.username.toLowerCase();
      const accountKey = `login:acct:${input.tenant}\u0000${username}`;
      guards.ip.spend(`login:ip:${source.ip}`);
      guards.account.spend(accountKey);
      const ok = await check({ ...input, username });
      if (!ok) fail('INVALID_CREDENTIALS', INVALID);
      guards.account.forgive(accountKey);
      const session = await sessions.issue({ id: ok.user.id, tenantId: ok.user.tenant_id }, ok.mfaAt);
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

    /** Ends the session the request came with. */
    async logout(ctx: TenantContext): Promise<void> {
      const actor = sessionActorOf(ctx);
      await sessions.revoke(actor.sessionId, actor.userId);
    },
  };
}

export type LoginService = ReturnType<typeof createLoginService>;
