import { isDeepStrictEqual } from 'node:util';

/**
 * How an identity's bound claims compare with a JWT's: `string`, each allowed value exactly (as a
 * JSON value); `glob`, each allowed value a pattern in which `*` stands for any run of characters.
 * `exact` is what identities saved before either existed (migration 028) keep: each bound value as
 * one JSON value, a bound list only the same list. It can be read, not chosen.
 */
export const BOUND_CLAIMS_TYPES = ['string', 'glob'] as const;
export type BoundClaimsType = (typeof BOUND_CLAIMS_TYPES)[number] | 'exact';

/**
 * Whether `text` matches `pattern`, where `*` matches any run of characters (none included) and every
 * other character only itself. No regular expression: the pattern splits at its stars, the first
 * piece must start the text, the last end it, and each middle one is found leftmost after the one
 * before. Taking the leftmost place is never wrong for star-only globs, so nothing is retried and
 * the work is at most the text's length times the pattern's, however many stars it has.
 * @example globMatch('repo:acme/app:ref:refs/heads/*', 'repo:acme/app:ref:refs/heads/main') // true
 */
export function globMatch(pattern: string, text: string): boolean {
  const pieces = pattern.split('*');
  if (pieces.length === 1) return pattern === text;
  const head = pieces[0]!;
  const tail = pieces.at(-1)!;
  if (text.length < head.length + tail.length || !text.startsWith(head) || !text.endsWith(tail)) return false;
  let at = head.length;
  const end = text.length - tail.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i]!;
    if (piece === '') continue;
    const found = text.indexOf(piece, at);
    if (found === -1 || found + piece.length > end) return false;
    at = found + piece.length;
  }
  return true;
}

const isScalar = (v: unknown): v is string | number | boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

function oneMatches(type: 'string' | 'glob', allowed: unknown, actual: unknown): boolean {
  if (type === 'glob') return typeof allowed === 'string' && typeof actual === 'string' && globMatch(allowed, actual);
  // Scalars of the same JSON type only: 1 is not "1", true is not "true".
  return isScalar(actual) && isDeepStrictEqual(allowed, actual);
}

/**
 * Whether a JWT's claim value satisfies one bound claim. Under `string` or `glob` the bound value is
 * one allowed value or a list of them; a claim that is a list matches when any of its elements
 * matches any allowed value (Vault's bound_claims). Anything else (an object, a nested list, a
 * value of another JSON type) matches nothing.
 */
export function claimMatches(type: BoundClaimsType, bound: unknown, actual: unknown): boolean {
  if (type === 'exact') return isDeepStrictEqual(bound, actual);
  const allowed = Array.isArray(bound) ? bound : [bound];
  const candidates = Array.isArray(actual) ? actual : [actual];
  return candidates.some((c) => allowed.some((a) => oneMatches(type, a, c)));
}
