import { sql, type Kysely } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import { openVersion } from '../secrets/open-version.ts';
import type { KnownValues } from './known-values.ts';
import { createRedactor, type Redactor, type RedactorOptions } from './redactor.ts';

/** Per-tenant redactors over every live value of the tenant. */
export interface TenantRedactors {
  /** The tenant's redactor, rebuilt when its values changed (checked at most every ttlMs). SEALED when sealed. */
  forTenant(tenantId: string): Promise<Redactor>;
  /** Drops the tenant's cached redactor: the next call rebuilds it. */
  forget(tenantId: string): void;
}

interface Entry {
  redactor: Redactor;
  stamp: string;
  checkedAt: number;
}

/** How long a cached redactor is trusted before the freshness query runs again. */
export const DEFAULT_REDACTOR_TTL_MS = 1_000;

/**
 * Builds a tenant's redactor from every version that still has a value (current, pending, previous and
 * superseded ones inside the rollback window, in every environment, of every secret); destroyed
 * versions have none. Decrypting here is not a `use` or `reveal`: no value leaves the process, and
 * nothing is audited. Plaintexts live only in the cached redactors and are dropped on seal.
 */
export function createTenantRedactors(deps: {
  db: Kysely<Database>;
  keyring: Pick<Keyring, 'openValue'>;
  clock: Clock;
  seal: { onSeal(listener: () => void): void };
  ttlMs?: number;
  known?: Pick<KnownValues, 'setTenant'>;
  options?: RedactorOptions;
}): TenantRedactors {
  const { db, keyring, clock, known } = deps;
  const ttlMs = deps.ttlMs ?? DEFAULT_REDACTOR_TTL_MS;
  const cache = new Map<string, Entry>();
  const building = new Map<string, Promise<Redactor>>();
  // Bumped by seal and forget: a build that started before must not repopulate the cache.
  const generations = new Map<string, number>();
  let epoch = 0;

  deps.seal.onSeal(() => {
    epoch++;
    cache.clear();
    building.clear();
  });

  /** Cheap and indexed (secret_versions_kek leads with tenant_id): changes when a version is added, destroyed or deleted. */
  async function stampOf(tenantId: string): Promise<string> {
    const row = await db.selectFrom('secret_versions')
      .select([
        sql<string | number>`count(*)`.as('n'),
        sql<string | number>`count(destroyed_at)`.as('destroyed'),
        sql<string | number | null>`max(created_at)`.as('latest'),
      ])
      .where('tenant_id', '=', tenantId).executeTakeFirst();
    return `${row?.n ?? 0}:${row?.destroyed ?? 0}:${row?.latest ?? ''}`;
  }

  async function build(tenantId: string): Promise<Redactor> {
    const startedEpoch = epoch;
    const startedGeneration = generations.get(tenantId) ?? 0;
    const stamp = await stampOf(tenantId);
    const columns = ['id', 'environment_id', 'secret_id', 'version', 'ciphertext', 'wrapped_dek', 'destroyed_at'] as const;
    const rows = await db.selectFrom('secret_versions').select(columns)
      .where('tenant_id', '=', tenantId).where('destroyed_at', 'is', null).where('ciphertext', 'is not', null)
      .execute();
    const values = new Set<string>();
    for (const row of rows) {
      const binding = { tenantId, environmentId: row.environment_id, secretId: row.secret_id, version: row.version };
      // A rewrap that committed since the rows were read has moved this one under a newer KEK: read it
      // again (open-version.ts). Destroyed or deleted meanwhile, it has no value left to mask.
      const reload = async () => (await db.selectFrom('secret_versions').select(columns).where('id', '=', row.id).executeTakeFirst()) ?? { ...row, destroyed_at: clock.now() };
      const plain = await openVersion(keyring, binding, row, reload).catch((err: unknown) => {
        if (isKeyholdError(err) && err.code === 'VERSION_DESTROYED') return null;
        throw err;
      });
      if (!plain) continue;
      values.add(plain.toString('utf8'));
      plain.fill(0);
    }
    const redactor = createRedactor(values, deps.options);
    if (startedEpoch === epoch && startedGeneration === (generations.get(tenantId) ?? 0)) {
      cache.set(tenantId, { redactor, stamp, checkedAt: clock.now() });
      known?.setTenant(tenantId, redactor, values);
    }
    return redactor;
  }

  async function refresh(tenantId: string): Promise<Redactor> {
    const entry = cache.get(tenantId);
    if (entry) {
      const stamp = await stampOf(tenantId);
      if (stamp === entry.stamp && cache.get(tenantId) === entry) {
        entry.checkedAt = clock.now();
        return entry.redactor;
      }
    }
    return build(tenantId);
  }

  return {
    forTenant(tenantId) {
      const entry = cache.get(tenantId);
      if (entry && clock.now() - entry.checkedAt < ttlMs) return Promise.resolve(entry.redactor);
      let pending = building.get(tenantId);
      if (!pending) {
        pending = refresh(tenantId).finally(() => {
          if (building.get(tenantId) === pending) building.delete(tenantId);
        });
        building.set(tenantId, pending);
      }
      return pending;
    },
    forget(tenantId) {
      generations.set(tenantId, (generations.get(tenantId) ?? 0) + 1);
      cache.delete(tenantId);
      building.delete(tenantId);
    },
  };
}
