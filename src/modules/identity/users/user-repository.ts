import { sql, type Insertable, type Kysely } from 'kysely';
import type { DialectName, Executor } from '../../../storage/database.ts';
import type { Database, UsersTable } from '../../../storage/schema.ts';
import { USER_COLUMNS, type UserRow } from './types.ts';

/** A user row with what login and second-factor checks need (never leaves the module). */
export interface UserCredentials extends UserRow {
  password_hash: string;
  totp_secret: Uint8Array | null;
  totp_last_step: number | null;
  totp_pending_secret: Uint8Array | null;
  totp_ticket_hash: string | null;
  totp_ticket_expires_at: number | null;
  factor_epoch: number;
}

const CREDENTIAL_COLUMNS = [
  ...USER_COLUMNS, 'password_hash', 'totp_secret', 'totp_last_step', 'totp_pending_secret', 'totp_ticket_hash', 'totp_ticket_expires_at', 'factor_epoch',
] as const;

/** Queries on `users`. Every one is scoped by tenant id: an id from another tenant finds nothing. */
export function createUserRepository(db: Kysely<Database>, dialect: DialectName) {
  return {
    async insert(row: Insertable<UsersTable>): Promise<void> {
      await db.insertInto('users').values(row).execute();
    },

    list(tenantId: string): Promise<UserRow[]> {
      return db.selectFrom('users').select(USER_COLUMNS).where('tenant_id', '=', tenantId).orderBy('username').execute();
    },

    byId(tenantId: string, id: string): Promise<UserRow | undefined> {
      return db.selectFrom('users').select(USER_COLUMNS).where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },

    credentialsByName(tenantId: string, username: string): Promise<UserCredentials | undefined> {
      return db.selectFrom('users').select(CREDENTIAL_COLUMNS).where('tenant_id', '=', tenantId).where('username', '=', username).executeTakeFirst();
    },

    credentialsById(tenantId: string, id: string): Promise<UserCredentials | undefined> {
      return db.selectFrom('users').select(CREDENTIAL_COLUMNS).where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },

    /**
     * Inside the transaction that starts a session: is the user still live, with the password hash
     * the login verified? On PostgreSQL the row is share-locked, so a concurrent password change or
     * disable either waits for the session (and then ends it) or commits first (and no session
     * starts). SQLite runs one transaction at a time anyway.
     */
    async lockSignIn(executor: Executor, tenantId: string, id: string, passwordHash: string): Promise<boolean> {
      let q = executor.selectFrom('users').select('id').where('tenant_id', '=', tenantId).where('id', '=', id)
        .where('password_hash', '=', passwordHash).where('disabled_at', 'is', null);
      if (dialect === 'postgres') q = q.forShare();
      return (await q.executeTakeFirst()) !== undefined;
    },

    /** Sets (or, with null, clears) the user's e-mail address; false when there is no such user. */
    async setEmail(tenantId: string, id: string, email: string | null, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ email }).where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /** Marks a live user disabled; false when there is no such live user. */
    async disable(tenantId: string, id: string, at: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ disabled_at: at })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('disabled_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /**
     * Replaces the password hash only if it is still the one the caller verified, so two concurrent
     * changes cannot both pass with the same current password.
     */
    async replacePassword(tenantId: string, id: string, expectedHash: string, newHash: string, at: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ password_hash: newHash, password_changed_at: at })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('password_hash', '=', expectedHash).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /**
     * Starts (or restarts) the replacement of a confirmed factor: a new sealed secret, kept apart from
     * the confirmed one, which stays as it is until `promotePendingTotp`. Only while the factor the
     * step-up verified is still there (same epoch): false after a reset meanwhile.
     */
    async setPendingTotp(tenantId: string, id: string, sealed: Uint8Array, epoch: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ totp_pending_secret: sealed })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('totp_enabled', '=', 1).where('factor_epoch', '=', epoch).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /**
     * Removes the user's second factor, confirmed and pending (an admin's reset: the next one needs a
     * ticket), and moves the factor epoch on, so nothing verified under the old factor counts any more.
     */
    async clearTotp(tenantId: string, id: string, executor: Executor = db): Promise<void> {
      await executor.updateTable('users')
        .set({ totp_secret: null, totp_enabled: 0, totp_pending_secret: null, totp_last_step: null, factor_epoch: sql`factor_epoch + 1` })
        .where('tenant_id', '=', tenantId).where('id', '=', id).execute();
    },

    /** Drops an enrolment started and not confirmed by a user with no factor (a new ticket supersedes it). */
    async dropUnconfirmedEnrolment(tenantId: string, id: string, executor: Executor = db): Promise<void> {
      await executor.updateTable('users').set({ totp_pending_secret: null })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('totp_enabled', '=', 0).execute();
    },

    /** Stores a new enrolment ticket's hash and expiry, replacing any earlier ticket; false when there is no such user. */
    async setTotpTicket(tenantId: string, id: string, ticketHash: string, expiresAt: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ totp_ticket_hash: ticketHash, totp_ticket_expires_at: expiresAt })
        .where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /**
     * Starts a first enrolment with a ticket: stores the pending secret and consumes the ticket in one
     * guarded UPDATE, matching only while the user has no confirmed factor and the ticket is still
     * theirs and live at `now`. Of two enrolments with one ticket, exactly one matches a row.
     */
    async setPendingTotpWithTicket(tenantId: string, id: string, sealed: Uint8Array, ticketHash: string, now: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ totp_pending_secret: sealed, totp_ticket_hash: null, totp_ticket_expires_at: null })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('totp_enabled', '=', 0)
        .where('totp_ticket_hash', '=', ticketHash).where('totp_ticket_expires_at', '>', now)
        .executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /**
     * The sealed secret in `column` of the user's row as it is now (null: none, or no such user). With
     * `forUpdate` (inside a transaction) the row stays as read until it ends: on PostgreSQL it is
     * locked; SQLite runs one transaction at a time anyway.
     */
    async sealedTotp(tenantId: string, id: string, column: 'totp_secret' | 'totp_pending_secret', executor: Executor = db, forUpdate = false): Promise<Uint8Array | null> {
      let q = executor.selectFrom('users').select(column).where('tenant_id', '=', tenantId).where('id', '=', id);
      if (forUpdate && dialect === 'postgres') q = q.forUpdate();
      const row = await q.executeTakeFirst();
      return (row as Record<typeof column, Uint8Array | null> | undefined)?.[column] ?? null;
    },

    /**
     * Makes the pending secret the user's factor, with `step` (the confirming code's) as its last
     * used step, only if the pending secret is still `pending`: of two confirmations of one
     * enrolment, or a confirmation racing a restart, exactly one matches a row.
     */
    async promotePendingTotp(tenantId: string, id: string, pending: Uint8Array, step: number, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('users').set({ totp_secret: pending, totp_pending_secret: null, totp_enabled: 1, totp_last_step: step })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('totp_pending_secret', '=', pending).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /**
     * Records `step` as the last TOTP step used, only if it is later than the last one. The one
     * guarded UPDATE is the arbiter: of two concurrent uses of one code, exactly one matches a row.
     */
    async claimTotpStep(tenantId: string, id: string, step: number, epoch: number): Promise<boolean> {
      // Only while the factor the code was checked against is still the user's (no reset meanwhile).
      const res = await db.updateTable('users').set({ totp_last_step: step })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('totp_enabled', '=', 1).where('factor_epoch', '=', epoch)
        .where((eb) => eb.or([eb('totp_last_step', 'is', null), eb('totp_last_step', '<', step)]))
        .executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
  };
}

export type UserRepository = ReturnType<typeof createUserRepository>;
