import type { Kysely } from 'kysely';
import type { IdentitySettings } from '../../../config/config.ts';
import type { Keyring } from '../../../crypto/keyring.ts';
import type { Clock } from '../../../platform/clock.ts';
import type { DialectName } from '../../../storage/database.ts';
import type { Database } from '../../../storage/schema.ts';
import type { Authorizer } from '../../policy/authorizer.ts';
import { createAttemptGuards, DEFAULT_ATTEMPT_LIMITS, type AttemptLimits } from './attempts.ts';
import { createLoginService } from './login-service.ts';
import { createPasswordHasher, DEFAULT_HASH_PARAMS, type PasswordHashParams } from './passwords.ts';
import { createSessionService } from './session-service.ts';
import { createTotpService } from './totp-service.ts';
import { createUserRepository } from './user-repository.ts';
import { createUserService } from './user-service.ts';
import type { AuditLog } from '../../audit/audit-log.ts';
import type { IdentifierHasher } from '../../audit/identifiers.ts';

export { userRoutes } from './routes.ts';
export { SESSION_PREFIX } from './session-service.ts';
export { rewrapTotpSecrets } from './totp-rewrap.ts';

/**
 * The human-users module wired from its parts: `users` (admin and password change), `sessions`
 * (the `khs_` credential source for the authenticator), `totp` (enrol, confirm, step-up) and
 * `logins` (login, logout). One rate-limit state per module instance (per process).
 */
export function createUserModule(deps: {
  db: Kysely<Database>;
  dialect: DialectName;
  keyring: Pick<Keyring, 'sealerFor' | 'openValue' | 'invalidate'>;
  tenants: { findByName(name: string): Promise<{ id: string; name: string } | null>; findById(id: string): Promise<{ id: string; name: string } | null> };
  authz: Pick<Authorizer, 'require' | 'bumpInTx' | 'invalidate'>;
  clock: Clock;
  identity: IdentitySettings;
  hashParams?: PasswordHashParams;
  limits?: AttemptLimits;
  audit: Pick<AuditLog, 'record' | 'appendInTx'>;
  identifiers: IdentifierHasher;
}) {
  const { db, dialect, clock } = deps;
  const repo = createUserRepository(db, dialect);
  const passwords = createPasswordHasher(deps.hashParams ?? DEFAULT_HASH_PARAMS);
  const guards = createAttemptGuards(deps.limits ?? DEFAULT_ATTEMPT_LIMITS, clock);
  const sessions = createSessionService({ db, dialect, clock, settings: deps.identity });
  const totp = createTotpService({
    db, repo, keyring: deps.keyring, tenants: deps.tenants, sessions, guard: guards.factor, clock, stepUpWindowMs: deps.identity.stepUpWindowMs, audit: deps.audit,
  });
  const users = createUserService({ db, repo, sessions, passwords, authz: deps.authz, guard: guards.factor, clock, audit: deps.audit });
  const logins = createLoginService({ db, repo, tenants: deps.tenants, sessions, totp, passwords, guards, clock, audit: deps.audit, identifiers: deps.identifiers });
  return { users, sessions, totp, logins };
}

export type UserModule = ReturnType<typeof createUserModule>;
