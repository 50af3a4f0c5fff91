import { CompiledQuery } from 'kysely';
import { onPostgres, type Executor } from '../../storage/database.ts';
import type { SecretsTable } from '../../storage/schema.ts';

type LabelColumn = 'current_version' | 'pending_version' | 'previous_version';

/** Queries over secrets, their per-environment label pointers and versions. Every query is tenant-scoped. */
export function createSecretRepository(db: Executor) {
  function labelledQuery(tenantId: string, name: string, environmentId: string, label: LabelColumn) {
    return db.selectFrom('secrets')
      .innerJoin('secret_states', (j) => j.onRef('secret_states.secret_id', '=', 'secrets.id')
        .on('secret_states.environment_id', '=', environmentId).on('secret_states.tenant_id', '=', tenantId))
      .innerJoin('secret_versions', (j) => j.onRef('secret_versions.secret_id', '=', 'secrets.id')
        .on('secret_versions.environment_id', '=', environmentId).onRef('secret_versions.version', '=', `secret_states.${label}`))
      .select(['secrets.id as secret_id', 'secrets.name', 'secrets.classification', 'secrets.owner', 'secrets.tags',
        'secret_versions.version', 'secret_versions.ciphertext', 'secret_versions.wrapped_dek',
        'secret_versions.created_at', 'secret_versions.destroyed_at'])
      .where('secrets.tenant_id', '=', tenantId).where('secrets.name', '=', name).where('secrets.deleted_at', 'is', null);
  }
  type LabelledRow = NonNullable<Awaited<ReturnType<ReturnType<typeof labelledQuery>['executeTakeFirst']>>>;

  /**
   * The hot read is compiled once per label: Kysely's builder costs more than the SQLite lookup itself.
   * Sentinel values locate each parameter, so the order never has to be assumed.
   */
  const compiled = new Map<LabelColumn, { sql: string; order: Array<'t' | 'n' | 'e'> }>();
  function compiledLabelled(label: LabelColumn) {
    let c = compiled.get(label);
    if (!c) {
      const q = labelledQuery('\u0000t', '\u0000n', '\u0000e', label).compile();
      const order = q.parameters.map((p) => ({ '\u0000t': 't', '\u0000n': 'n', '\u0000e': 'e' } as const)[p as string]!);
      if (order.some((o) => o === undefined)) throw new Error('unexpected parameter in the labelled read');
      c = { sql: q.sql, order };
      compiled.set(label, c);
    }
    return c;
  }

  return {
    findSecret(tenantId: string, name: string) {
      return db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
    },

    async insertSecret(row: SecretsTable) {
      await db.insertInto('secrets').values(row).execute();
    },

    /** Updates a live secret's metadata; false if the revision moved on, or it was deleted (or destroyed) meanwhile. */
    async updateSecret(tenantId: string, id: string, patch: Partial<SecretsTable>, expectedRevision?: number) {
      let q = db.updateTable('secrets').set((eb) => ({ ...patch, revision: eb('revision', '+', 1) }))
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('deleted_at', 'is', null);
      if (expectedRevision !== undefined) q = q.where('revision', '=', expectedRevision);
      const res = await q.executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    listSecrets(tenantId: string, opts: { includeDeleted: boolean; after?: string; prefix?: string; limit: number }) {
      let q = db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenantId);
      if (!opts.includeDeleted) q = q.where('deleted_at', 'is', null);
      if (opts.after) q = q.where('name', '>', opts.after);
      if (opts.prefix) q = q.where('name', '>=', opts.prefix).where('name', '<', opts.prefix + '\uffff');
      return q.orderBy('name').limit(opts.limit).execute();
    },

    listStates(tenantId: string, secretId: string) {
      return db.selectFrom('secret_states').innerJoin('environments', 'environments.id', 'secret_states.environment_id')
        .select(['environments.name as environment', 'current_version', 'pending_version', 'previous_version', 'updated_at'])
        .where('secret_states.tenant_id', '=', tenantId).where('secret_states.secret_id', '=', secretId)
        .orderBy('environments.name').execute();
    },

    findState(secretId: string, environmentId: string) {
      return db.selectFrom('secret_states').selectAll()
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).executeTakeFirst();
    },

    /**
     * The label row, locked until the transaction ends: a no-op write takes the row's lock on
     * PostgreSQL and the write lock on SQLite, so no rollback or promotion can move a label between
     * a check made on this row and what the transaction does next.
     */
    lockState(secretId: string, environmentId: string) {
      return db.updateTable('secret_states').set((eb) => ({ current_version: eb.ref('current_version') }))
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).returningAll().executeTakeFirst();
    },

    /**
     * Whether the secret is still live (not deleted, not destroyed), held so until the transaction
     * ends: FOR SHARE on PostgreSQL makes a delete or destroy wait for the write that checked it;
     * SQLite runs one write transaction at a time. A write checks this before it adds a version.
     */
    async lockLiveSecret(tenantId: string, id: string) {
      let q = db.selectFrom('secrets').select('id').where('tenant_id', '=', tenantId).where('id', '=', id).where('deleted_at', 'is', null);
      if (onPostgres(db)) q = q.forShare();
      return (await q.executeTakeFirst()) !== undefined;
    },

    /** Soft-deletes a live secret; false if it is deleted already (or gone): another delete or a destroy won. */
    async softDeleteSecret(tenantId: string, id: string, now: number) {
      const res = await db.updateTable('secrets').set((eb) => ({ deleted_at: now, updated_at: now, revision: eb('revision', '+', 1) }))
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /** Restores a soft-deleted secret; false if it is not deleted (any more) or gone. */
    async restoreSecret(tenantId: string, id: string, now: number) {
      const res = await db.updateTable('secrets').set((eb) => ({ deleted_at: null, updated_at: now, revision: eb('revision', '+', 1) }))
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('deleted_at', 'is not', null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /** Locks a soft-deleted secret's row for its destruction; false if it is live (restored meanwhile) or gone. */
    async lockDeletedSecret(tenantId: string, id: string) {
      const res = await db.updateTable('secrets').set((eb) => ({ deleted_at: eb.ref('deleted_at') }))
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('deleted_at', 'is not', null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    /** Creates the label row for a secret in an environment if it is not there yet (idempotent). */
    async ensureState(tenantId: string, secretId: string, environmentId: string, now: number) {
      await db.insertInto('secret_states').values({
        secret_id: secretId, environment_id: environmentId, tenant_id: tenantId,
        current_version: null, pending_version: null, previous_version: null, latest_version: 0, updated_at: now,
      }).onConflict((oc) => oc.columns(['secret_id', 'environment_id']).doNothing()).execute();
    },

    /**
     * Allocates the next version number and moves the labels in one guarded UPDATE: the row lock
     * serialises writers on PostgreSQL, and the check-and-set condition makes a stale writer match
     * no row. Returns the new version and the one it superseded, or null on CAS mismatch.
     */
    async advanceCurrent(secretId: string, environmentId: string, cas: number | undefined, now: number) {
      let q = db.updateTable('secret_states')
        .set((eb) => ({
          latest_version: eb('latest_version', '+', 1),
          previous_version: eb.ref('current_version'),
          current_version: eb('latest_version', '+', 1),
          updated_at: now,
        }))
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId);
      if (cas !== undefined) q = cas === 0 ? q.where('current_version', 'is', null) : q.where('current_version', '=', cas);
      const row = await q.returning(['current_version', 'previous_version']).executeTakeFirst();
      return row ? { version: row.current_version!, superseded: row.previous_version } : null;
    },

    /** Swaps current and previous (rollback), guarded by the expected current version. */
    async swapCurrentWithPrevious(secretId: string, environmentId: string, current: number, previous: number, now: number) {
      const res = await db.updateTable('secret_states')
        .set({ current_version: previous, previous_version: current, updated_at: now })
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId)
        .where('current_version', '=', current).where('previous_version', '=', previous)
        .executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    async insertVersion(row: {
      id: string; tenant_id: string; secret_id: string; environment_id: string; version: number;
      ciphertext: Uint8Array; wrapped_dek: Uint8Array; kek_version: number; created_at: number; created_by: string; reason: string;
    }) {
      await db.insertInto('secret_versions').values({ ...row, superseded_at: null, destroyed_at: null }).execute();
    },

    async setSuperseded(secretId: string, environmentId: string, version: number, at: number | null) {
      await db.updateTable('secret_versions').set({ superseded_at: at })
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).where('version', '=', version).execute();
    },

    /**
     * The hot read: secret + environment + label pointer + version in one indexed query.
     * Joins on tenant id at every step so a row of another tenant can never match.
     */
    async readLabelled(tenantId: string, name: string, environmentId: string, label: LabelColumn): Promise<LabelledRow | undefined> {
      const c = compiledLabelled(label);
      const values = { t: tenantId, n: name, e: environmentId };
      const result = await db.executeQuery<LabelledRow>(CompiledQuery.raw(c.sql, c.order.map((o) => values[o])));
      return result.rows[0];
    },

    findVersion(tenantId: string, secretId: string, environmentId: string, version: number) {
      return db.selectFrom('secret_versions').selectAll()
        .where('tenant_id', '=', tenantId).where('secret_id', '=', secretId)
        .where('environment_id', '=', environmentId).where('version', '=', version).executeTakeFirst();
    },

    listVersions(tenantId: string, secretId: string, environmentId: string) {
      return db.selectFrom('secret_versions')
        .select(['version', 'created_at', 'created_by', 'reason', 'superseded_at', 'destroyed_at'])
        .where('tenant_id', '=', tenantId).where('secret_id', '=', secretId).where('environment_id', '=', environmentId)
        .orderBy('version', 'desc').execute();
    },

    /** Crypto-shreds versions: the data key (and ciphertext) are deleted, the metadata stays as history. */
    async destroyVersions(tenantId: string, secretId: string, versionIds: string[], now: number) {
      if (versionIds.length === 0) return 0;
      const res = await db.updateTable('secret_versions').set({ wrapped_dek: null, ciphertext: null, destroyed_at: now })
        .where('tenant_id', '=', tenantId).where('secret_id', '=', secretId).where('id', 'in', versionIds)
        .where('destroyed_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows);
    },

    /**
     * Crypto-shreds one version if it is still superseded since `cutoff` or before (the retention
     * sweep): a version made current again since has no `superseded_at`, one superseded again a newer one.
     */
    async shredSuperseded(tenantId: string, versionId: string, cutoff: number, now: number) {
      const res = await db.updateTable('secret_versions').set({ wrapped_dek: null, ciphertext: null, destroyed_at: now })
        .where('tenant_id', '=', tenantId).where('id', '=', versionId)
        .where('superseded_at', '<=', cutoff).where('destroyed_at', 'is', null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },

    async clearDestroyedLabels(secretId: string, environmentId: string, version: number) {
      await db.updateTable('secret_states').set({ previous_version: null })
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).where('previous_version', '=', version).execute();
      await db.updateTable('secret_states').set({ pending_version: null })
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).where('pending_version', '=', version).execute();
    },

    /** Versions superseded before `cutoff` that are not current, across all tenants (retention sweep). */
    expiredSuperseded(cutoff: number, limit: number) {
      return db.selectFrom('secret_versions')
        .innerJoin('secret_states', (j) => j.onRef('secret_states.secret_id', '=', 'secret_versions.secret_id')
          .onRef('secret_states.environment_id', '=', 'secret_versions.environment_id'))
        .select(['secret_versions.id', 'secret_versions.tenant_id', 'secret_versions.secret_id', 'secret_versions.environment_id',
          'secret_versions.version', 'secret_states.current_version'])
        .where('secret_versions.superseded_at', '<=', cutoff).where('secret_versions.destroyed_at', 'is', null)
        .limit(limit).execute();
    },

    async deleteSecret(tenantId: string, secretId: string) {
      await db.deleteFrom('secret_versions').where('tenant_id', '=', tenantId).where('secret_id', '=', secretId).execute();
      await db.deleteFrom('secret_states').where('tenant_id', '=', tenantId).where('secret_id', '=', secretId).execute();
      await db.deleteFrom('secrets').where('tenant_id', '=', tenantId).where('id', '=', secretId).execute();
    },
  };
}

export type SecretRepository = ReturnType<typeof createSecretRepository>;
