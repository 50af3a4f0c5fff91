import type { Kysely } from 'kysely';
import type { DialectName, Executor } from '../../../storage/database.ts';
import type { Database, MachineIdentitiesTable } from '../../../storage/schema.ts';

/** Queries over machine_identities. Every admin lookup is scoped by tenant; only the exchange looks up by client id alone. */
export function createMachineRepository(db: Kysely<Database>, dialect: DialectName) {
  return {
    async insert(row: MachineIdentitiesTable): Promise<void> {
      await db.insertInto('machine_identities').values(row).execute();
    },

    find(tenantId: string, id: string, executor: Executor = db): Promise<MachineIdentitiesTable | undefined> {
      return executor.selectFrom('machine_identities').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },

    /** The token exchange's lookup: client ids are globally unique and carry no tenant. */
    findByClientId(clientId: string): Promise<MachineIdentitiesTable | undefined> {
      return db.selectFrom('machine_identities').selectAll().where('client_id', '=', clientId).executeTakeFirst();
    },

    list(tenantId: string): Promise<MachineIdentitiesTable[]> {
      return db.selectFrom('machine_identities').selectAll().where('tenant_id', '=', tenantId).orderBy('name').orderBy('id').execute();
    },

    /** Marks an identity disabled; false when it was not live. */
    async disable(tenantId: string, id: string, now: number, executor: Executor): Promise<boolean> {
      const res = await executor.updateTable('machine_identities').set({ disabled_at: now })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('disabled_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    async setSecretHash(tenantId: string, id: string, hash: string, executor: Executor = db): Promise<boolean> {
      const res = await executor.updateTable('machine_identities').set({ client_secret_hash: hash })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('disabled_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /**
     * Inside the transaction that issues a token: is the identity still live (and, for a client
     * secret, is the secret still the one that was checked)? On PostgreSQL the row is share-locked,
     * so a concurrent disable or rotation either waits for this token (and then revokes it) or wins
     * first (and no token is issued). SQLite runs one transaction at a time anyway.
     */
    async lockLive(executor: Executor, id: string, secretHash: string | null): Promise<boolean> {
      let q = executor.selectFrom('machine_identities').select('id').where('id', '=', id).where('disabled_at', 'is', null);
      if (secretHash !== null) q = q.where('client_secret_hash', '=', secretHash);
      if (dialect === 'postgres') q = q.forShare();
      return (await q.executeTakeFirst()) !== undefined;
    },

    /** Live (unexpired, unrevoked) access tokens of an identity: what an admin may revoke one by one. */
    liveTokens(tenantId: string, principalId: string, now: number) {
      return db.selectFrom('tokens').select(['id', 'created_at', 'expires_at'])
        .where('tenant_id', '=', tenantId).where('principal_id', '=', principalId).where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .orderBy('created_at').orderBy('id').execute();
    },

    /** Whether a user exists in the tenant (an identity's owner must be a real person of that tenant). */
    /** Whether `userId` is an enabled user of the tenant: a disabled person can own nothing (approve, be told). */
    async enabledUserExists(tenantId: string, userId: string): Promise<boolean> {
      const row = await db.selectFrom('users').select('id').where('tenant_id', '=', tenantId).where('id', '=', userId).where('disabled_at', 'is', null).executeTakeFirst();
      return row !== undefined;
    },
  };
}

export type MachineRepository = ReturnType<typeof createMachineRepository>;
