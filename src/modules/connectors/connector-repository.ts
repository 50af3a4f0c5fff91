import type { Kysely, Transaction } from 'kysely';
import type { ConnectorsTable, Database } from '../../storage/schema.ts';

export type ConnectorRow = ConnectorsTable & { environment: string };

/** Connector rows; every query is filtered by tenant. Slot rows move with their connector in the caller's transaction. */
export function createConnectorRepository(db: Kysely<Database> | Transaction<Database>) {
  const base = () => db.selectFrom('connectors').innerJoin('environments', 'environments.id', 'connectors.environment_id')
    .selectAll('connectors').select('environments.name as environment');

  async function writeSlots(row: ConnectorsTable): Promise<void> {
    await db.deleteFrom('connector_slots').where('connector_id', '=', row.id).execute();
    const slots = Object.entries(JSON.parse(row.slots) as Record<string, string>);
    if (slots.length > 0) {
      await db.insertInto('connector_slots').values(slots.map(([slot, secret]) => ({ connector_id: row.id, tenant_id: row.tenant_id, slot, secret_name: secret }))).execute();
    }
  }

  return {
    find(tenantId: string, environmentId: string, name: string): Promise<ConnectorRow | undefined> {
      return base().where('connectors.tenant_id', '=', tenantId).where('connectors.environment_id', '=', environmentId).where('connectors.name', '=', name).executeTakeFirst();
    },

    list(tenantId: string, environmentId?: string): Promise<ConnectorRow[]> {
      let q = base().where('connectors.tenant_id', '=', tenantId);
      if (environmentId) q = q.where('connectors.environment_id', '=', environmentId);
      return q.orderBy('environments.name').orderBy('connectors.name').execute();
    },

    async insert(row: ConnectorsTable): Promise<void> {
      await db.insertInto('connectors').values(row).execute();
      await writeSlots(row);
    },

    /** Replaces a connector's fields if its revision is still `expected`; false when someone else changed it first. */
    async update(row: ConnectorsTable, expected: number): Promise<boolean> {
      const { id, tenant_id, ...changes } = row;
      const res = await db.updateTable('connectors').set(changes).where('tenant_id', '=', tenant_id).where('id', '=', id).where('revision', '=', expected).executeTakeFirst();
      if (Number(res.numUpdatedRows) === 0) return false;
      await writeSlots(row);
      return true;
    },

    async remove(tenantId: string, id: string, expected: number): Promise<boolean> {
      await db.deleteFrom('connector_slots').where('tenant_id', '=', tenantId).where('connector_id', '=', id).execute();
      const res = await db.deleteFrom('connectors').where('tenant_id', '=', tenantId).where('id', '=', id).where('revision', '=', expected).executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    },

    /** Every (environment, connector, slot) naming a secret, across the tenant's environments. */
    async dependents(tenantId: string, secretName: string): Promise<Array<{ environment: string; connector: string; slot: string }>> {
      const rows = await db.selectFrom('connector_slots')
        .innerJoin('connectors', 'connectors.id', 'connector_slots.connector_id')
        .innerJoin('environments', 'environments.id', 'connectors.environment_id')
        .select(['environments.name as environment', 'connectors.name as connector', 'connector_slots.slot as slot'])
        .where('connector_slots.tenant_id', '=', tenantId).where('connectors.tenant_id', '=', tenantId).where('connector_slots.secret_name', '=', secretName)
        .orderBy('environments.name').orderBy('connectors.name').orderBy('connector_slots.slot').execute();
      return rows.map((r) => ({ environment: r.environment, connector: r.connector, slot: r.slot }));
    },

    /** Owners of the named secrets (deleted ones included: they still say whose credential it was). */
    async owners(tenantId: string, names: string[]): Promise<Map<string, string>> {
      if (names.length === 0) return new Map();
      const rows = await db.selectFrom('secrets').select(['name', 'owner']).where('tenant_id', '=', tenantId).where('name', 'in', names).execute();
      return new Map(rows.map((r) => [r.name, r.owner]));
    },

    async usernames(tenantId: string, candidates: string[]): Promise<Set<string>> {
      if (candidates.length === 0) return new Set();
      const rows = await db.selectFrom('users').select('username').where('tenant_id', '=', tenantId).where('username', 'in', candidates).execute();
      return new Set(rows.map((r) => r.username));
    },
  };
}

export type ConnectorRepository = ReturnType<typeof createConnectorRepository>;
