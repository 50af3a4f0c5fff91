import type { Authorizer, SecretResource } from '../policy/authorizer.ts';
import type { Action } from '../policy/actions.ts';
import type { TenantContext } from '../shared/context.ts';

/** What a secret's metadata can open: the actions tenant policies and access policies decide on it. */
const GUARDED: readonly Action[] = ['list', 'use', 'reveal', 'write', 'rotate', 'delete'];

/**
 * Tenant policies and access policies may key on a secret's owner, tags and classification
 * (`forbid reveal when resource.tags.contains("pci")`). A writer who could change them at will
 * could take a secret out of such a rule, then do what it forbade. So a change of them is judged
 * by what it does for its author: the first action, in the first environment (or at tenant
 * level), that the new metadata would allow the author and the old does not; null when there is
 * none. The caller then needs the tenant's admin, as it does to lower a classification.
 */
export async function widenedFor(ctx: TenantContext, authz: Pick<Authorizer, 'allowed'>, before: SecretResource, after: SecretResource, environments: readonly string[], now: number): Promise<{ action: Action; environment: string | undefined } | null> {
  // Judged as right after a second factor: an author whose factor is stale now could step up next.
  const author: TenantContext = ctx.actor.type === 'user' ? { ...ctx, actor: { ...ctx.actor, mfaAt: now } } : ctx;
  for (const environment of [undefined, ...environments]) {
    for (const action of GUARDED) {
      if ((await authz.allowed(author, action, after, environment)) && !(await authz.allowed(author, action, before, environment))) return { action, environment };
    }
  }
  return null;
}
