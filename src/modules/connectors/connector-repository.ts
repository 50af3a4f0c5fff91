import type { Kysely } from 'kysely';
import type { Executor } from '../../storage/database.ts';
import type { ConnectorsTable, Database } from '../../storage/schema.ts';

export type ConnectorRow = ConnectorsTable & { environment: string };

/** Queries over connectors; every one is scoped by tenant, and joins the environment's name. */
export function createConnectorRepository(db: Kysely<Database>) {
  const base = (executor: Executor) => executor.selectFrom('connectors')
    .innerJoin('environments', (j) => j.onRef('environments.id', '=', 'connectors.environment_id').onRef('environments.tenant_id', '=', 'connectors.tenant_id'))
    .selectAll('connectors').select('environments.name as environment');

  return {
    find(tenantId: string, environmentId: string, name: string, executor: Executor = db): Promise<ConnectorRow | undefined> {
      return base(executor).where('connectors.tenant_id', '=', tenantId).where('connectors.environment_id', '=', environmentId).where('connectors.name', '=', name).executeTakeFirst();
    },

    list(tenantId: string, environmentId?: string): Promise<ConnectorRow[]> {
      let q = base(db).where('connectors.tenant_id', '=', tenantId);
      if (environmentId) q = q.where('connectors.environment_id', '=', environmentId);
      return q.orderBy('connectors.name').orderBy('environments.name').execute();
    },

    async insert(row: ConnectorsTable, executor: Executor): Promise<void> {
      await executor.insertInto('connectors').values(row).execute();
    },

    /** Replaces settings and slots if the revision is still `expected`; false when another writer won. */
    async update(tenantId: string, id: string, expected: number, patch: Pick<ConnectorsTable, 'settings' | 'slots' | 'owner' | 'updated_at'>, executor: Executor): Promise<boolean> {
      const res = await executor.updateTable('connectors').set({ ...patch, revision: expected + 1 })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('revision', '=', expected).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    async remove(tenantId: string, id: string, executor: Executor): Promise<boolean> {
      const res = await executor.deleteFrom('connectors').where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    },

    /** Owners of the named secrets, and the tenant's usernames: what `personal` is judged on. */
    async owners(tenantId: string): Promise<{ owners: Map<string, string>; usernames: Set<string> }> {
      const [secrets, users] = await Promise.all([
        db.selectFrom('secrets').select(['name', 'owner']).where('tenant_id', '=', tenantId).execute(),
        db.selectFrom('users').select('username').where('tenant_id', '=', tenantId).execute(),
      ]);
      return { owners: new Map(secrets.map((s) => [s.name, s.owner])), usernames: new Set(users.map((u) => u.username)) };
    },
  };
}

export type ConnectorRepository = ReturnType<typeof createConnectorRepository>;
