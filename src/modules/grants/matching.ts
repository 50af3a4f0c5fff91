import type { GrantsTable } from '../../storage/schema.ts';

/** A name pattern: letters, digits, _ . - and * (any run of characters). */
export const NAME_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;

/** A grant as decisions use it: its JSON lists parsed once, when the grant is loaded. */
export interface LiveGrant {
  role: string;
  environments: string[] | null;
  namePatterns: string[] | null;
  expiresAt: number | null;
  revokedAt: number | null;
}

export function toLiveGrant(row: Pick<GrantsTable, 'role' | 'environments' | 'name_patterns' | 'expires_at' | 'revoked_at'>): LiveGrant {
  return {
    role: row.role,
    environments: row.environments === null ? null : (JSON.parse(row.environments) as string[]),
    namePatterns: row.name_patterns === null ? null : (JSON.parse(row.name_patterns) as string[]),
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

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
  grants: readonly LiveGrant[],
  request: { now: number; environment?: string; secretName?: string; listOnly?: boolean },
): string[] {
  const roles = new Set<string>();
  for (const g of grants) {
    if (g.revokedAt !== null || (g.expiresAt !== null && g.expiresAt <= request.now)) continue;
    const { environments: envs, namePatterns: patterns } = g;
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
