import type { Kysely, Transaction } from 'kysely';
import { auditFrom, type AuditLog } from '../../audit/audit-log.ts';
import type { Database } from '../../../storage/schema.ts';
import type { Keyring } from '../../../crypto/keyring.ts';
import { wipe } from '../../../crypto/bytes.ts';
import { fail, isKeyholdError } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import type { TenantContext } from '../../shared/context.ts';
import type { AttemptGuard } from './attempts.ts';
import { recordingRefusals } from './refusal-events.ts';
import type { SessionService } from './session-service.ts';
import { decodeSealedTotp, encodeSealedTotp, matchTotpStep, newTotpSecret, otpauthUri, sameSealedSecret, totpBinding } from './totp.ts';
import { sessionActorOf } from './types.ts';
import type { UserCredentials, UserRepository } from './user-repository.ts';
import { withCurrentKek } from '../../keys/current-kek.ts';
import { hashTicket, ticketMatches } from './enrolment-ticket.ts';

export interface TotpEnrolment {
  /** Base32 secret and otpauth:// URI: shown once, never again. */
  secret: string;
  uri: string;
}

/** The columns of a user's row that hold a sealed secret: the confirmed factor, and one being enrolled. */
type SealedColumn = 'totp_secret' | 'totp_pending_secret';

/** Refusals of a second-factor action that are events (SPEC §7); other errors are not the user's attempt. */
const AUDITED_REFUSALS = new Set(['TOTP_INVALID', 'TOTP_NOT_ENROLLED', 'RATE_LIMITED', 'STEP_UP_REQUIRED', 'TOTP_TICKET_INVALID']);
/** One answer for a missing, wrong, expired, used or another user's ticket: which one is no business of the caller. */
const TICKET_REFUSAL = 'a first second factor needs a valid enrolment ticket from a tenant admin (keyhold users totp-ticket); it is missing, wrong, expired or already used';

/**
 * TOTP second factor: enrolment (secret sealed under the tenant KEK), confirmation, step-up, and
 * the replay-safe check login uses. A code is accepted for the current step or one either side,
 * and only for a step later than the last one accepted, claimed by one guarded UPDATE.
 *
 * A secret being enrolled is kept apart from the confirmed one (`totp_pending_secret`): until a
 * code from the new secret confirms it, login and step-up go on asking for the old factor's codes.
 * Every attempt (allowed or refused) is an event; no event carries the secret or a code.
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
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
}) {
  const { db, repo, keyring, sessions, guard, clock, audit } = deps;
  /** A second-factor event: allowed, or denied with the refusal's code (`refused`). */
  const factorEvent = (ctx: TenantContext, action: string, context: Record<string, string> = {}, refused?: string) => {
    const base = auditFrom(ctx);
    const outcome = refused === undefined ? { outcome: 'allowed' as const } : { outcome: 'denied' as const, reason: refused };
    return [{ ...base, action, resource: { type: 'user', id: ctx.actor.id, name: ctx.actor.name }, ...outcome, context: { ...base.context, ...context } }];
  };

  /** Runs a second-factor action; a refusal the user caused is recorded (denied, with its code) before it is thrown. */
  function audited<T>(ctx: TenantContext, action: string, run: () => Promise<T>): Promise<T> {
    if (ctx.actor.type !== 'user') return run();
    return recordingRefusals(audit, AUDITED_REFUSALS, (code) => factorEvent(ctx, action, {}, code), run);
  }

  async function openSecret(user: UserCredentials, blob: Uint8Array): Promise<string> {
    const parts = decodeSealedTotp(blob) ?? fail('INTEGRITY_FAILURE', 'the stored second-factor secret is corrupted');
    const plain = await keyring.openValue(totpBinding(user.tenant_id, user.id), parts.ciphertext, parts.wrappedDek);
    try {
      return plain.toString('utf8');
    } finally {
      wipe(plain);
    }
  }

  /**
   * Opens the secret in `column` of the loaded row, and says which stored blob it came from. Under a
   * retired KEK, the column is read once more: a rewrap that committed since the row was loaded has
   * moved the same secret under a newer KEK, and that blob opens (a guard on the column must compare
   * with it, not the stale one). Another secret, or none, means the factor was replaced or reset
   * meanwhile: null, no code of it counts. The same wrapped key was really left under the retired
   * version, and KEY_VERSION_RETIRED stands.
   */
  async function openSealed(user: UserCredentials, column: SealedColumn): Promise<{ secret: string; blob: Uint8Array } | null> {
    const blob = user[column] ?? fail('TOTP_NOT_ENROLLED', 'no second factor is enrolled');
    try {
      return { secret: await openSecret(user, blob), blob };
    } catch (err) {
      if (!isKeyholdError(err) || err.code !== 'KEY_VERSION_RETIRED') throw err;
      const again = await repo.sealedTotp(user.tenant_id, user.id, column);
      if (again === null || !sameSealedSecret(again, blob)) return null;
      if (Buffer.compare(again, blob) === 0) throw err;
      return { secret: await openSecret(user, again), blob: again };
    }
  }

  /** Whether `code` is a fresh, valid code of the user's confirmed factor; a true answer has used the code up. */
  async function useCode(user: UserCredentials, code: string): Promise<boolean> {
    if (user.totp_secret === null || user.totp_enabled !== 1) return false;
    const opened = await openSealed(user, 'totp_secret');
    const step = opened && matchTotpStep(opened.secret, code, clock.now());
    if (step === null || (user.totp_last_step !== null && step <= user.totp_last_step)) return false;
    return repo.claimTotpStep(user.tenant_id, user.id, step, user.factor_epoch);
  }

  async function signedInUser(ctx: TenantContext) {
    const actor = sessionActorOf(ctx);
    const user = (await repo.credentialsById(actor.tenantId, actor.userId)) ?? fail('UNAUTHENTICATED', 'the session has ended');
    return { actor, user };
  }

  /**
   * Checks a code for the signed-in user (charged to their attempt budget) with `check`, then in
   * one transaction applies `commit`, marks this session as just verified and appends `action`'s
   * event: the session's new second-factor time exists only if its event does (fail closed).
   */
  async function verifyForSession<T>(
    ctx: TenantContext, action: string,
    check: (user: UserCredentials) => Promise<T | null>,
    commit: (user: UserCredentials, found: T, trx: Transaction<Database>) => Promise<boolean>,
    context?: (user: UserCredentials) => Record<string, string>,
  ) {
    return audited(ctx, action, async () => {
      const { actor, user } = await signedInUser(ctx);
      guard.spend(`factor:${actor.userId}`);
      const found = await check(user);
      if (found === null) fail('TOTP_INVALID', 'the code is wrong, expired, or already used');
      guard.forgive(`factor:${actor.userId}`);
      const now = clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await commit(user, found, trx))) fail('TOTP_INVALID', 'the code is wrong, expired, or already used');
        await sessions.markMfa(actor.sessionId, actor.userId, now, user.factor_epoch, trx);
        await audit.appendInTx(trx, factorEvent(ctx, action, context?.(user)));
      });
      return { actor, now };
    });
  }

  return {
    useCode,

    /**
     * Starts enrolment: a new secret, sealed under the tenant KEK and kept pending; a confirmed
     * factor stays in force until the new one is confirmed. A first factor needs the user's
     * enrolment ticket from an admin, consumed here (a password alone must not yield a factor whose
     * confirmation counts as a step-up); replacing a confirmed factor needs a fresh step-up instead.
     */
    enrol(ctx: TenantContext, input: { ticket?: string } = {}): Promise<TotpEnrolment> {
      return audited(ctx, 'auth.totp-enroll', async () => {
        const { actor, user } = await signedInUser(ctx);
        const mfaAt = ctx.actor.mfaAt ?? null;
        const replacing = user.totp_enabled === 1;
        if (replacing && (mfaAt === null || mfaAt + deps.stepUpWindowMs < clock.now())) {
          fail('STEP_UP_REQUIRED', 'replacing an enrolled second factor needs a fresh step-up (keyhold step-up)');
        }
        const ticketRefused = () => fail('TOTP_TICKET_INVALID', TICKET_REFUSAL);
        if (!replacing && !ticketMatches(input.ticket, user, clock.now())) ticketRefused();
        const tenant = (await deps.tenants.findById(actor.tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
        const secret = newTotpSecret();
        // Sealed under the KEK current in the same transaction, as every write is (keys/current-kek.ts).
        await withCurrentKek(keyring, actor.tenantId, ({ seal, assertCurrent }) => db.transaction().execute(async (trx) => {
          await assertCurrent(trx);
          const sealed = seal(totpBinding(actor.tenantId, actor.userId), Buffer.from(secret, 'utf8'));
          const blob = encodeSealedTotp(sealed.ciphertext, sealed.wrappedDek);
          if (replacing) {
            // Reset by an admin since the step-up was checked: the factor it vouched for is gone.
            if (!(await repo.setPendingTotp(actor.tenantId, actor.userId, blob, user.factor_epoch, trx))) ticketRefused();
          }
          // The guarded UPDATE consumes the ticket: of two enrolments with it, the second matches no row.
          else if (!(await repo.setPendingTotpWithTicket(actor.tenantId, actor.userId, blob, hashTicket(input.ticket!), clock.now(), trx))) ticketRefused();
          await audit.appendInTx(trx, factorEvent(ctx, 'auth.totp-enroll', { replacing: String(replacing) }));
        }));
        return { secret, uri: otpauthUri(secret, tenant.name, user.username) };
      });
    },

    /**
     * Confirms enrolment with a code from the new secret: only then does it replace the old factor
     * (if any), and from now on login needs its codes.
     */
    async confirm(ctx: TenantContext, code: string): Promise<{ totpEnabled: true; mfaAt: string }> {
      const { now } = await verifyForSession(ctx, 'auth.totp-confirm',
        async (user) => {
          if (user.totp_pending_secret === null) fail('TOTP_NOT_ENROLLED', 'start enrolment first (keyhold totp enroll)');
          const opened = await openSealed(user, 'totp_pending_secret');
          const step = opened && matchTotpStep(opened.secret, code, clock.now());
          return step === null ? null : { step, pending: opened!.blob };
        },
        async (user, { step, pending }, trx) => {
          if (await repo.promotePendingTotp(user.tenant_id, user.id, pending, step, trx)) return true;
          // A rewrap may have moved the pending secret since it was opened: the same secret under a newer
          // KEK is still the one the code confirmed. Another one (a restart) or none (confirmed, reset) is not.
          const now = await repo.sealedTotp(user.tenant_id, user.id, 'totp_pending_secret', trx, true);
          return now !== null && Buffer.compare(now, pending) !== 0 && sameSealedSecret(now, pending)
            && repo.promotePendingTotp(user.tenant_id, user.id, now, step, trx);
        },
        (user) => ({ replaced: String(user.totp_enabled === 1) }));
      return { totpEnabled: true, mfaAt: new Date(now).toISOString() };
    },

    /**
     * Step-up: a fresh code of the confirmed factor sets this session's mfa time to now. The code is
     * used up before the transaction: a step-up refused after it costs one code, never a replay.
     */
    async stepUp(ctx: TenantContext, code: string): Promise<{ mfaAt: string }> {
      const { now } = await verifyForSession(ctx, 'auth.step-up',
        async (user) => {
          if (user.totp_enabled !== 1) fail('TOTP_NOT_ENROLLED', 'no second factor is enrolled; enrol one first (keyhold totp enroll)');
          return (await useCode(user, code)) || null;
        },
        async () => true);
      return { mfaAt: new Date(now).toISOString() };
    },
  };
}

export type TotpService = ReturnType<typeof createTotpService>;
