import { errors, jwtVerify } from 'jose';
import type { Clock } from '../../../platform/clock.ts';
import type { JwksCache } from './jwks-cache.ts';
import { claimMatches } from './claim-match.ts';
import { bindsCaller } from './oidc-binding.ts';
import type { OidcBinding } from './types.ts';

/**
 * Asymmetric algorithms only: with a symmetric one (HS256) a token "signed" with the IdP's public
 * key would verify (algorithm confusion), and `none` is no signature at all.
 */
export const ALLOWED_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'PS256'];
/** Skew allowed between the IdP's clock and ours when checking exp, nbf and iat. */
const CLOCK_TOLERANCE_SECONDS = 30;

/**
 * `notAfter` (epoch ms): when Keyhold stops taking the JWT (its exp or the binding's max age after its
 * iat, whichever is sooner, plus the skew), which a token exchanged for it must not outlive. `subject` and `jwtId`: its `sub` and `jti`, when strings.
 */
export type AssertionCheck = { ok: true; subject: string | null; jwtId: string | null; notAfter: number } | { ok: false; reason: string };

/**
 * A reason for the operator's log: the kind of failure, never the token or its claims. Anything
 * else the key lookup threw is the JWKS fetch; anything else after it, jose refusing the key it
 * found (an RSA key under 2048 bits), whose message names the key's flaw and nothing of the token.
 */
function reasonOf(err: unknown, inKeyLookup: boolean): string {
  if (err instanceof errors.JWTClaimValidationFailed || err instanceof errors.JWTExpired) return `${err.code} (${err.claim}: ${err.reason})`;
  if (err instanceof errors.JOSEError) return err.code;
  if (inKeyLookup) return `jwks fetch failed (${(err as Error)?.name ?? 'error'})`;
  return `key refused (${(err as Error)?.message ?? 'error'})`;
}

/**
 * Verifies a JWT from an identity provider against an OIDC identity's binding: signature by a key
 * from its JWKS, issuer, audience, time claims (by Keyhold's clock, so the whole server agrees on
 * "now"; at most the binding's max age after iat), then the bound subject (exactly) and every bound claim (by the binding's claims type).
 */
export function createOidcVerifier(deps: { clock: Clock; jwks: JwksCache }) {
  return {
    async verify(binding: OidcBinding, assertion: string): Promise<AssertionCheck> {
      // Saved before subjects or claims were required: it would admit every caller of the issuer.
      if (!bindsCaller(binding)) return { ok: false, reason: 'binding names no subject or claim' };
      let payload: Record<string, unknown>;
      const keys = deps.jwks.get(binding.jwksUrl);
      let inKeyLookup = false;
      try {
        ({ payload } = await jwtVerify(assertion, async (header, token) => {
          inKeyLookup = true;
          const key = await keys(header, token);
          inKeyLookup = false;
          return key;
        }, {
          issuer: binding.issuer,
          audience: binding.audience,
          algorithms: ALLOWED_ALGORITHMS,
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: new Date(deps.clock.now()),
          // A token without an expiry would be good forever; one with an expiry years away nearly so.
          // The max age bounds both (from iat, which it makes required), and refuses an iat in the
          // future: such a token comes from a signer whose clock (or claims) cannot be trusted.
          requiredClaims: ['exp'],
          maxTokenAge: binding.maxAgeSeconds,
        }));
      } catch (err) {
        return { ok: false, reason: reasonOf(err, inKeyLookup) };
      }
      const subject = typeof payload.sub === 'string' ? payload.sub : null;
      if (binding.subject !== null && binding.subject !== '' && subject !== binding.subject) return { ok: false, reason: 'bound subject mismatch' };
      for (const [claim, expected] of Object.entries(binding.claims)) {
        if (!Object.hasOwn(payload, claim) || !claimMatches(binding.boundClaimsType, expected, payload[claim])) {
          return { ok: false, reason: `bound claim mismatch (${claim})` };
        }
      }
      // exp and iat are present and numbers: jose required and checked both (iat because of the max age).
      // A JWT with a distant exp stops being taken at its max age, and so must what it was exchanged for.
      const lastTaken = Math.min(payload.exp as number, (payload.iat as number) + binding.maxAgeSeconds);
      const jwtId = typeof payload.jti === 'string' ? payload.jti : null;
      return { ok: true, subject, jwtId, notAfter: (lastTaken + CLOCK_TOLERANCE_SECONDS) * 1000 };
    },
  };
}

export type OidcVerifier = ReturnType<typeof createOidcVerifier>;
