import type { GrantsTable } from '../../storage/schema.ts';

/** A name pattern: letters, digits, _ . - and * (any run of characters). */
export const NAME_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;

const compiled = new Map<string, RegExp>();

/** Glob match where `*` is any run of characters; everything else is literal. */
export function matchesPattern(pattern: string, name: string): boolean {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')}$`);
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(pattern, re);
  }
  return re.test(name);
}

/**
 * The roles a principal's grants give for one request. A grant counts when it is live (not revoked,
 * not expired at `now`) and covers the request:
 * - on a secret in an environment: the environment is in the grant's list (or it has none) and the
 *   name matches one of its patterns (or it has none);
 * - `list` of secret metadata: only the name has to match (metadata is not per environment);
 * - any other action without an environment (tenant administration, deleting a whole secret): only
 *   grants narrowed neither by environment nor by name count.
 */
export function rolesFor(
  grants: readonly Pick<GrantsTable, 'role' | 'environments' | 'name_patterns' | 'expires_at' | 'revoked_at'>[],
  request: { now: number; environment?: string; secretName?: string; listOnly?: boolean },
): string[] {
  const roles = new Set<string>();
  for (const g of grants) {
    if (g.revoked_at !== null || (g.expires_at !== null && g.expires_at <= request.now)) continue;
    const envs = g.environments === null ? null : (JSON.parse(g.environments) as string[]);
    const patterns = g.name_patterns === null ? null : (JSON.parse(g.name_patterns) as string[]);
    if (request.environment !== undefined) {
      if (envs !== null && !envs.includes(request.environment)) continue;
    } else if (!request.listOnly && envs !== null) continue;
    if (request.secretName !== undefined) {
      if (patterns !== null && !patterns.some((p) => matchesPattern(p, request.secretName!))) continue;
    } else if (patterns !== null) continue;
    roles.add(g.role);
  }
  return [...roles].sort();
}
