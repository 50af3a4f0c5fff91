import { auditFrom, type AuditLog } from '../../audit/audit-log.ts';
import type { Kysely } from 'kysely';
import { fail } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import { newId } from '../../../platform/ids.ts';
import { isUniqueViolation } from '../../../storage/db-errors.ts';
import type { Database } from '../../../storage/schema.ts';
import type { Authorizer } from '../../policy/authorizer.ts';
import type { TenantContext } from '../../shared/context.ts';
import type { AttemptGuard } from './attempts.ts';
import { recordingRefusals } from './refusal-events.ts';
import { assertStrongPassword, type PasswordHasher } from './passwords.ts';
import type { SessionService } from './session-service.ts';
import { assertUserEmail, assertUsername, sessionActorOf, toUser, type User } from './types.ts';
import type { UserRepository } from './user-repository.ts';
import { hashTicket, newTicket, ticketTtlMs } from './enrolment-ticket.ts';

const TENANT = { type: 'tenant' } as const;
/**
 * Refusals of a password change that are events (SPEC §7): the attempt was the user's. A weak new
 * password is input validation, like any other 400, and is not recorded.
 */
const PASSWORD_REFUSALS: ReadonlySet<string> = new Set(['INVALID_CREDENTIALS', 'RATE_LIMITED']);

/**
 * People in a tenant: created, listed, disabled and given TOTP enrolment tickets by tenant admins
 * (each call asks the authorizer for `admin`), and their own password change. Disabling a user ends their sessions in the same
 * transaction; a password change ends every other session of theirs.
 */
export function createUserService(deps: {
  db: Kysely<Database>;
  repo: UserRepository;
  sessions: Pick<SessionService, 'revokeAllFor'>;
  passwords: PasswordHasher;
  authz: Pick<Authorizer, 'require' | 'bumpInTx' | 'invalidate'>;
  guard: AttemptGuard;
  clock: Clock;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
}) {
  const { db, repo, sessions, passwords, authz, guard, clock, audit } = deps;
  const userEvent = (ctx: TenantContext, action: string, user: { id: string; username: string }, outcome: 'allowed' | 'denied' = 'allowed', reason?: string, context: Record<string, string> = {}) => {
    const base = auditFrom(ctx);
    return [{ ...base, action, resource: { type: 'user', id: user.id, name: user.username }, outcome, ...(reason ? { reason } : {}), context: { ...base.context, ...context } }];
  };

  async function find(ctx: TenantContext, id: string) {
    return (await repo.byId(ctx.tenantId, id)) ?? fail('USER_NOT_FOUND', 'no such user in this tenant');
  }

  return {
    /** Creates a user; `email` (optional) is where notifications reach them. Its event says one was given, never which. */
    async create(ctx: TenantContext, input: { username: string; password: string; email?: string }): Promise<User> {
      await authz.require(ctx, 'admin', TENANT);
      assertUsername(input.username);
      if (input.email !== undefined) assertUserEmail(input.email);
      assertStrongPassword(input.password, input.username);
      const now = clock.now();
      const row = {
        id: newId(), tenant_id: ctx.tenantId, username: input.username, password_hash: await passwords.hash(input.password),
        totp_secret: null, totp_enabled: 0, totp_last_step: null, created_at: now, password_changed_at: now, disabled_at: null, email: input.email ?? null,
      };
      try {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('users').values(row).execute();
          await authz.bumpInTx(trx, ctx.tenantId);
          await audit.appendInTx(trx, userEvent(ctx, 'user.create', row, 'allowed', undefined, row.email === null ? {} : { email: 'set' }));
        });
      } catch (err) {
        if (isUniqueViolation(err)) fail('USER_EXISTS', `a user named "${input.username}" already exists in this tenant`);
        throw err;
      }
      await authz.invalidate(ctx.tenantId);
      return toUser(row);
    },

    async list(ctx: TenantContext): Promise<User[]> {
      await authz.require(ctx, 'admin', TENANT);
      return (await repo.list(ctx.tenantId)).map(toUser);
    },

    async get(ctx: TenantContext, id: string): Promise<User> {
      await authz.require(ctx, 'admin', TENANT);
      return toUser(await find(ctx, id));
    },

    /**
     * Sets the user's e-mail address, or clears it (null). The address is personal data: the event
     * (`user.update`) says only that one was set or cleared.
     */
    async setEmail(ctx: TenantContext, id: string, email: string | null): Promise<User> {
      await authz.require(ctx, 'admin', TENANT);
      if (email !== null) assertUserEmail(email);
      const target = await find(ctx, id);
      await db.transaction().execute(async (trx) => {
        if (!(await repo.setEmail(ctx.tenantId, id, email, trx))) fail('USER_NOT_FOUND', 'no such user in this tenant');
        await audit.appendInTx(trx, userEvent(ctx, 'user.update', target, 'allowed', undefined, { email: email === null ? 'cleared' : 'set' }));
      });
      return toUser(await find(ctx, id));
    },

    /** Disables a user and ends every session of theirs at once. Disabling a disabled user changes nothing. */
    async disable(ctx: TenantContext, id: string): Promise<User> {
      await authz.require(ctx, 'admin', TENANT);
      const target = await find(ctx, id);
      await db.transaction().execute(async (trx) => {
        if (await repo.disable(ctx.tenantId, id, clock.now(), trx)) {
          await sessions.revokeAllFor(id, null, trx);
          await authz.bumpInTx(trx, ctx.tenantId);
          await audit.appendInTx(trx, userEvent(ctx, 'user.disable', target));
        }
      });
      await authz.invalidate(ctx.tenantId);
      return toUser(await find(ctx, id));
    },

    /**
     * Issues a one-time enrolment ticket for a user of the tenant (their first second factor needs
     * one), replacing any earlier ticket. The ticket is returned once; only its hash is stored, and
     * its event (written with it) carries the expiry, never the ticket.
     *
     * `resetFactor`: the user lost their authenticator. Their factor (confirmed and pending) is removed
     * and every session of theirs ends, in the same transaction: they sign in with the password alone
     * and enrol a new factor with this ticket; nothing that needs a step-up is reachable until then.
     */
    async issueTotpTicket(ctx: TenantContext, id: string, input: { ttlSeconds?: number; resetFactor?: boolean } = {}): Promise<{ ticket: string; expiresAt: string }> {
      await authz.require(ctx, 'admin', TENANT);
      const ttlMs = ticketTtlMs(input.ttlSeconds);
      const target = await find(ctx, id);
      // A person's factor is given or reset by a person who proved their own second factor (step-up), or
      // root: a machine identity holding tenant-admin has no second factor to prove.
      if (ctx.actor.type !== 'user' && ctx.actor.type !== 'root') {
        await audit.record(userEvent(ctx, 'user.totp-ticket', target, 'denied', 'FORBIDDEN'));
        fail('FORBIDDEN', 'enrolment tickets are issued by a tenant admin in person (with a fresh second factor) or by root');
      }
      const ticket = newTicket();
      const expiresAt = clock.now() + ttlMs;
      const shown = new Date(expiresAt).toISOString();
      await db.transaction().execute(async (trx) => {
        if (!(await repo.setTotpTicket(ctx.tenantId, id, hashTicket(ticket), expiresAt, trx))) fail('USER_NOT_FOUND', 'no such user in this tenant');
        const reset: Record<string, string> = {};
        if (!input.resetFactor) {
          // A new ticket supersedes an enrolment started with an earlier one and not confirmed (its QR code may have leaked).
          await repo.dropUnconfirmedEnrolment(ctx.tenantId, id, trx);
        } else {
          await repo.clearTotp(ctx.tenantId, id, trx);
          reset.resetFactor = 'true';
          reset.revokedSessions = String(await sessions.revokeAllFor(id, null, trx));
        }
        await audit.appendInTx(trx, userEvent(ctx, 'user.totp-ticket', target, 'allowed', undefined, { expiresAt: shown, factorEnrolled: String(target.totp_enabled === 1), ...reset }));
      });
      return { ticket, expiresAt: shown };
    },

    /**
     * Changes the signed-in user's own password (the current one is required); every other session
     * of theirs ends. A refusal the user's attempt caused (wrong current password, over the attempt
     * budget, changed meanwhile) is a denied event with its code; never a password.
     */
    async changePassword(ctx: TenantContext, input: { current: string; new: string }): Promise<{ revokedSessions: number }> {
      const actor = sessionActorOf(ctx);
      const user = (await repo.credentialsById(actor.tenantId, actor.userId)) ?? fail('UNAUTHENTICATED', 'the session has ended');
      const subject = { id: actor.userId, username: user.username };
      const denied = (code: string) => userEvent(ctx, 'auth.password-change', subject, 'denied', code);
      // A budget of its own, apart from the second-factor codes': a right password (which a thief holding
      // a session may also have) forgives only password guesses, never buys more code guesses at step-up.
      const budget = `password:${actor.userId}`;
      return recordingRefusals(audit, PASSWORD_REFUSALS, denied, async () => {
        guard.spend(budget);
        if (!(await passwords.verify(user.password_hash, input.current))) fail('INVALID_CREDENTIALS', 'the current password is wrong');
        guard.forgive(budget);
        assertStrongPassword(input.new, user.username);
        const newHash = await passwords.hash(input.new);
        const revoked = await db.transaction().execute(async (trx) => {
          if (!(await repo.replacePassword(actor.tenantId, actor.userId, user.password_hash, newHash, clock.now(), trx))) {
            fail('INVALID_CREDENTIALS', 'the password was changed meanwhile; sign in again');
          }
          const count = await sessions.revokeAllFor(actor.userId, actor.sessionId, trx);
          await audit.appendInTx(trx, userEvent(ctx, 'auth.password-change', subject));
          return count;
        });
        return { revokedSessions: revoked };
      });
    },
  };
}

export type UserService = ReturnType<typeof createUserService>;
