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

/**
 * Glob match where `*` is any run of characters; everything else is literal (case-sensitive).
 * Not a regular expression: V8 backtracks, and `*A*A*A*A*A*B` against 128 `A`s took seconds per
 * star on the one thread every tenant's decisions share. This walk resumes only from the last
 * star, so it costs at most pattern × name steps (128 × 128).
 * @example matchesPattern('STRIPE_*', 'STRIPE_LIVE_KEY') // true
 */
export function matchesPattern(pattern: string, name: string): boolean {
  let p = 0;
  let n = 0;
  // Where the last star was, and the name position it has swallowed up to: where a mismatch resumes.
  let star = -1;
  let resume = 0;
  while (n < name.length) {
    if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      resume = n;
    } else if (p < pattern.length && pattern[p] === name[n]) {
      p++;
      n++;
    } else if (star >= 0) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * The roles a principal's grants give for one request. A grant counts when it is live (not revoked,
 * not expired at `now`) and covers the request:
 * - on a secret in an environment: the environment is in the grant's list (or it has none) and the
 *   name matches one of its patterns (or it has none);
 * - `list` of secret metadata: only the name has to match (metadata is not per environment);
 * - a secret-wide action without an environment (creating, metadata, deleting the whole secret):
 *   the name must match (or the grant has no patterns), and grants narrowed by environment never count;
 * - an action on the tenant itself (administration, audit, export): only grants narrowed neither by
 *   environment nor by name count.
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
