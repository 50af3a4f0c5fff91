import type { Kysely } from 'kysely';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { Database } from '../../storage/schema.ts';
import { SECRET_ACTIONS, type Action } from '../policy/actions.ts';
import type { Authorizer, AuthzResource } from '../policy/authorizer.ts';
import { secretResource } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';

/** What a run can do with its token in its environment: every per-environment action but reveal (machines never reveal). */
const RUN_ACTIONS: readonly Action[] = SECRET_ACTIONS.filter((a) => a !== 'reveal');
const TENANT = { type: 'tenant' } as const;
/** Resources checked between two turns of the event loop. */
const YIELD_EVERY = 10;

/**
 * The entitlement to make an automation act as its run identity (`runAs`): whoever saves, deletes
 * or runs it by hand must hold, in every environment it may run in, every permission the run
 * identity holds there, on every secret of the tenant and environment-wide. Otherwise an author
 * could borrow a machine's rights (a builder limited to staging making a production-capable
 * machine do the work). Compared through the authorizer, so roles, name patterns, escrow grants
 * and tenant policies count on both sides exactly as they would at run time; the run identity is
 * asked as its run token will be, bound to the environment. Grants the identity receives later are
 * its granter's decision; the next save, delete or manual run is checked again.
 */
export function createRunAsCheck(deps: { db: Kysely<Database>; authz: Pick<Authorizer, 'allowed' | 'require'> }) {
  const { db, authz } = deps;

  return {
    /** Throws FORBIDDEN (or STEP_UP_REQUIRED / APPROVAL_REQUIRED, as the action would) unless `ctx` holds what `runAs` holds in `environments`. */
    async require(ctx: TenantContext, runAs: string, environments: readonly string[]): Promise<void> {
      if (ctx.actor.type === 'root' || ctx.actor.type === 'system') return;
      const machine = await db.selectFrom('machine_identities').select(['id', 'name']).where('tenant_id', '=', ctx.tenantId)
        .where('name', '=', runAs).where('disabled_at', 'is', null).executeTakeFirst();
      if (!machine) return; // an unknown or disabled identity acts nowhere (the definition check names it)
      const rows = await db.selectFrom('secrets').select(['id', 'name', 'classification', 'owner', 'tags'])
        .where('tenant_id', '=', ctx.tenantId).where('deleted_at', 'is', null).orderBy('name').execute();
      const resources: AuthzResource[] = [TENANT, ...rows.map(secretResource)];
      for (const environment of environments) {
        const asRun: TenantContext = {
          tenantId: ctx.tenantId, requestId: ctx.requestId,
          actor: { type: 'machine', id: machine.id, name: machine.name, homeTenantId: ctx.tenantId, boundEnvironment: environment },
        };
        for (const [i, resource] of resources.entries()) {
          // Uncached decisions are synchronous Cedar calls: let other requests in between (a save in a
          // tenant with thousands of secrets takes seconds on a cold decision cache).
          if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((resolve) => setImmediate(resolve));
          for (const action of RUN_ACTIONS) {
            if (!(await authz.allowed(asRun, action, resource, environment))) continue;
            try {
              await authz.require(ctx, action, resource, environment);
            } catch (err) {
              if (!isKeyholdError(err) || err.code !== 'FORBIDDEN') throw err;
              // The denial is already audited; the message says why without naming a secret the author may not see.
              fail('FORBIDDEN', `runAs: "${machine.name}" may ${action} secrets in ${environment} that you may not; only someone who holds every permission of a run identity where the automation runs may make it act as that identity`);
            }
          }
        }
      }
    },
  };
}

export type RunAsCheck = ReturnType<typeof createRunAsCheck>;
