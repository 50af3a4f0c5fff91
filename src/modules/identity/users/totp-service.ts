import type { Kysely, Transaction } from 'kysely';
import { auditFrom, type AuditLog } from '../../audit/audit-log.ts';
import type { Database } from '../../../storage/schema.ts';
import type { Keyring } from '../../../crypto/keyring.ts';
import { wipe } from '../../../crypto/bytes.ts';
import { fail } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import type { TenantContext } from '../../shared/context.ts';
import type { AttemptGuard } from './attempts.ts';
import type { SessionService } from './session-service.ts';
import { decodeSealedTotp, encodeSealedTotp, matchTotpStep, newTotpSecret, otpauthUri, totpBinding } from './totp.ts';
import { sessionActorOf } from './types.ts';
import type { UserCredentials, UserRepository } from './user-repository.ts';
import { withCurrentKek } from '../../keys/current-kek.ts';

export interface TotpEnrolment {
  /** Base32 secret and otpauth:// URI: shown once, never again. */
  secret: string;
  uri: string;
}

/**
 * TOTP second factor: enrolment (secret sealed under the tenant KEK), confirmation, step-up, and
 * the replay-safe check login uses. A code is accepted for the current step or one either side,
 * and only for a step later than the last one accepted, claimed by one guarded UPDATE.
 */
export function createTotpService(deps: {
  db: Kysely<Database>;
  repo: UserRepository;
  keyring: Pick<Keyring, 'sealerFor' | 'openValue' | 'invalidate'>;
  tenants: { findById(id: string): Promise<{ name: string } | null> };
  sessions: Pick<SessionService, 'markMfa'>;
  guard: AttemptGuard;
  clock: Clock;
  stepUpWindowMs: number;
  audit: Pick<AuditLog, 'appendInTx'>;
}) {
  const { db, repo, keyring, sessions, guard, clock, audit } = deps;
  const factorEvent = (ctx: TenantContext, action: string) => [{ ...auditFrom(ctx), action, resource: { type: 'user', id: ctx.actor.id, name: ctx.actor.name }, outcome: 'allowed' as const }];

  async function openSecret(user: UserCredentials): Promise<string> {
    const parts = decodeSealedTotp(user.totp_secret!) ?? fail('INTEGRITY_FAILURE', 'the stored second-factor secret is corrupted');
    const plain = await keyring.openValue(totpBinding(user.tenant_id, user.id), parts.ciphertext, parts.wrappedDek);
    try {
      return plain.toString('utf8');
    } finally {
      wipe(plain);
    }
  }

  /** Whether `code` is a fresh, valid code for this user; a true answer has used the code up. */
  async function useCode(user: UserCredentials, code: string): Promise<boolean> {
    if (user.totp_secret === null) return false;
    const step = matchTotpStep(await openSecret(user), code, clock.now());
    if (step === null || (user.totp_last_step !== null && step <= user.totp_last_step)) return false;
    return repo.claimTotpStep(user.tenant_id, user.id, step);
  }

  async function signedInUser(ctx: TenantContext) {
    const actor = sessionActorOf(ctx);
    const user = (await repo.credentialsById(actor.tenantId, actor.userId)) ?? fail('UNAUTHENTICATED', 'the session has ended');
    return { actor, user };
  }

  /**
   * Checks a code for the signed-in user (charged to their attempt budget), then in one
   * transaction marks this session as just verified, applies `alsoInTx` and appends `action`'s
   * event: the session's new second-factor time exists only if its event does (fail closed).
   * The code stays used even if that transaction fails: a refused step-up costs one code, never
   * a replay.
   */
  async function verifyForSession(ctx: TenantContext, code: string, require: 'pending' | 'enabled', action: string, alsoInTx?: (trx: Transaction<Database>) => Promise<void>) {
    const { actor, user } = await signedInUser(ctx);
    guard.spend(`factor:${actor.userId}`);
    if (require === 'enabled' ? user.totp_enabled !== 1 : user.totp_secret === null) {
      fail('TOTP_NOT_ENROLLED', require === 'enabled' ? 'no second factor is enrolled; enrol one first (keyhold totp enroll)' : 'start enrolment first (keyhold totp enroll)');
    }
    if (!(await useCode(user, code))) fail('TOTP_INVALID', 'the code is wrong, expired, or already used');
    guard.forgive(`factor:${actor.userId}`);
    const now = clock.now();
    await db.transaction().execute(async (trx) => {
      await sessions.markMfa(actor.sessionId, actor.userId, now, trx);
      await alsoInTx?.(trx);
      await audit.appendInTx(trx, factorEvent(ctx, action));
    });
    return { actor, now };
  }

  return {
    useCode,

    /**
     * Starts enrolment: a new secret, sealed under the tenant KEK and not yet enabled. Replacing a
     * confirmed factor needs a fresh step-up (a session without one must not swap the factor out).
     */
    async enrol(ctx: TenantContext): Promise<TotpEnrolment> {
      const { actor, user } = await signedInUser(ctx);
      const mfaAt = ctx.actor.mfaAt ?? null;
      if (user.totp_enabled === 1 && (mfaAt === null || mfaAt + deps.stepUpWindowMs < clock.now())) {
        fail('STEP_UP_REQUIRED', 'replacing an enrolled second factor needs a fresh step-up (keyhold step-up)');
      }
      const tenant = (await deps.tenants.findById(actor.tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
      const secret = newTotpSecret();
      // Sealed under the KEK current in the same transaction, as every write is (keys/current-kek.ts).
      await withCurrentKek(keyring, actor.tenantId, ({ seal, assertCurrent }) => db.transaction().execute(async (trx) => {
        await assertCurrent(trx);
        const sealed = seal(totpBinding(actor.tenantId, actor.userId), Buffer.from(secret, 'utf8'));
        await repo.setPendingTotp(actor.tenantId, actor.userId, encodeSealedTotp(sealed.ciphertext, sealed.wrappedDek), trx);
      }));
      return { secret, uri: otpauthUri(secret, tenant.name, user.username) };
    },

    /** Confirms enrolment with a code from the app; from now on login needs a code. */
    async confirm(ctx: TenantContext, code: string): Promise<{ totpEnabled: true; mfaAt: string }> {
      const actor = sessionActorOf(ctx);
      const { now } = await verifyForSession(ctx, code, 'pending', 'auth.totp-confirm', (trx) => repo.enableTotp(actor.tenantId, actor.userId, trx));
      return { totpEnabled: true, mfaAt: new Date(now).toISOString() };
    },

    /** Step-up: a fresh code sets this session's mfa time to now. */
    async stepUp(ctx: TenantContext, code: string): Promise<{ mfaAt: string }> {
      const { now } = await verifyForSession(ctx, code, 'enabled', 'auth.step-up');
      return { mfaAt: new Date(now).toISOString() };
    },
  };
}

export type TotpService = ReturnType<typeof createTotpService>;
