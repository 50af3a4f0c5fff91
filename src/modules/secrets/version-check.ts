import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Database } from '../../storage/schema.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import { assertSecretName } from '../shared/names.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { secretResource } from './secret-service.ts';

/** At most this many names per check: one indexed query, one answer small enough to poll every few seconds. */
export const MAX_VERSION_CHECK_NAMES = 100;

/**
 * The cheap "has it moved?" question behind the SDK's cache: the current version number of each
 * named secret in one environment, never a value. Each name is authorized with the permission a
 * read needs (`use` for a machine, `reveal` for a person), and a name the caller may not read,
 * that does not exist, is deleted or has no value answers `null`: the caller learns nothing it
 * could not learn by reading. Not audited: no value is touched, it is polled every few seconds by
 * every SDK instance, and each value actually fetched after a move is its own use/reveal event.
 */
export function createVersionCheckService(deps: {
  db: Kysely<Database>;
  tenants: Pick<TenantService, 'environment'>;
  authz: Pick<Authorizer, 'allowed'>;
  maxNameLength: number;
}) {
  const { db, tenants, authz, maxNameLength } = deps;

  return {
    /** Current version per name (null: unknown, forbidden or unset; indistinguishable on purpose). */
    async currentVersions(ctx: TenantContext, environment: string, names: readonly string[]): Promise<Record<string, number | null>> {
      if (names.length > MAX_VERSION_CHECK_NAMES) fail('VALIDATION_FAILED', `at most ${MAX_VERSION_CHECK_NAMES} names per check`);
      for (const name of names) assertSecretName(name, maxNameLength);
      const env = await tenants.environment(ctx.tenantId, environment);
      const unique = [...new Set(names)];
      const rows = unique.length === 0 ? [] : await db.selectFrom('secrets')
        .innerJoin('secret_states', (j) => j.onRef('secret_states.secret_id', '=', 'secrets.id')
          .on('secret_states.environment_id', '=', env.id).on('secret_states.tenant_id', '=', ctx.tenantId))
        .select(['secrets.id', 'secrets.name', 'secrets.classification', 'secrets.owner', 'secrets.tags', 'secret_states.current_version'])
        .where('secrets.tenant_id', '=', ctx.tenantId).where('secrets.name', 'in', unique).where('secrets.deleted_at', 'is', null)
        .execute();
      const action = ctx.actor.type === 'machine' ? 'use' as const : 'reveal' as const;
      const versions: Record<string, number | null> = Object.create(null);
      for (const name of unique) versions[name] = null;
      for (const row of rows) {
        if (row.current_version === null) continue;
        if (await authz.allowed(ctx, action, secretResource(row), environment)) versions[row.name] = row.current_version;
      }
      return versions;
    },
  };
}

export type VersionCheckService = ReturnType<typeof createVersionCheckService>;
