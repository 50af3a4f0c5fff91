import { fail } from '../../../errors/index.ts';
import { isForbiddenHost, isLoopbackHost } from '../../../platform/addresses.ts';
import { BOUND_CLAIMS_TYPES } from './claim-match.ts';
import { DEFAULT_OIDC_MAX_AGE_SECONDS, MAX_OIDC_MAX_AGE_SECONDS, MIN_OIDC_MAX_AGE_SECONDS, type CreateMachineInput, type OidcBinding } from './types.ts';

const MAX_CLAIMS = 32;
const MAX_CLAIMS_JSON_BYTES = 4096;
const MAX_ALLOWED_VALUES = 64;

/**
 * Checks one bound claim's value for its claims type: one allowed value or a non-empty list of them,
 * each a string, number or boolean (a string under `glob`). A glob of stars alone would admit any
 * string the issuer puts in that claim, so it is refused as binding nothing.
 */
function assertBoundValue(name: string, value: unknown, type: 'string' | 'glob'): void {
  const allowed = Array.isArray(value) ? value : [value];
  if (allowed.length === 0) fail('VALIDATION_FAILED', `oidc.claims.${name} is an empty list, which no token could match`);
  if (allowed.length > MAX_ALLOWED_VALUES) fail('VALIDATION_FAILED', `oidc.claims.${name} may list at most ${MAX_ALLOWED_VALUES} values`);
  for (const v of allowed) {
    if (type === 'glob') {
      if (typeof v !== 'string') fail('VALIDATION_FAILED', `oidc.claims.${name}: with boundClaimsType glob every value is a string pattern`);
      if (/^\*+$/.test(v)) fail('VALIDATION_FAILED', `oidc.claims.${name}: a pattern of stars alone matches every value and binds nothing`);
    } else if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      fail('VALIDATION_FAILED', `oidc.claims.${name}: a value is a string, number or boolean, or a list of them`);
    }
  }
}

/**
 * A JWKS URL Keyhold may fetch keys from: https, or plain http only on loopback (a local IdP or a
 * test). Keys fetched over plain http from elsewhere could be swapped by anyone on the path. A
 * link-local or cloud metadata host is refused as connector destinations are (DESTINATION_FORBIDDEN);
 * a name that only resolves to one is refused when the keys are fetched (jwks-cache.ts).
 */
export function assertJwksUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail('VALIDATION_FAILED', 'oidc.jwksUrl must be an absolute URL');
  }
  if (url.username !== '' || url.password !== '') fail('VALIDATION_FAILED', 'oidc.jwksUrl must not carry credentials');
  if (isForbiddenHost(url.hostname)) fail('DESTINATION_FORBIDDEN', 'oidc.jwksUrl is a link-local or cloud metadata address, which Keyhold never calls');
  if (url.protocol === 'https:') return url.href;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url.href;
  return fail('VALIDATION_FAILED', 'oidc.jwksUrl must be https (plain http is allowed only on loopback)');
}

/** Whether a binding names who may use it (a subject or a claim), beyond issuer and audience. */
export function bindsCaller(binding: Pick<OidcBinding, 'subject' | 'claims'>): boolean {
  return (binding.subject !== null && binding.subject !== '') || Object.keys(binding.claims).length > 0;
}

/** Checks an OIDC binding as given by an admin and returns it in stored form. */
export function parseOidcBinding(input: CreateMachineInput['oidc']): OidcBinding {
  if (!input) return fail('VALIDATION_FAILED', 'an oidc identity needs oidc: { issuer, jwksUrl, audience }');
  const jwksUrl = assertJwksUrl(input.jwksUrl);
  const claims = input.claims ?? {};
  if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) fail('VALIDATION_FAILED', 'oidc.claims must be a JSON object');
  const keys = Object.keys(claims);
  if (keys.length > MAX_CLAIMS) fail('VALIDATION_FAILED', `oidc.claims may bind at most ${MAX_CLAIMS} claims`);
  for (const key of keys) {
    if (key.length === 0 || key.length > 100) fail('VALIDATION_FAILED', 'oidc.claims names are 1 to 100 characters');
    // The HTTP body parser refuses it first; any other reader (JSON.parse) makes it an own key, which a copy by assignment would drop.
    if (key === '__proto__') fail('VALIDATION_FAILED', 'oidc.claims may not bind a claim named __proto__: Keyhold refuses the name anywhere in a request body');
    if (claims[key] === undefined) fail('VALIDATION_FAILED', 'oidc.claims values must be JSON values');
  }
  const boundClaimsType = input.boundClaimsType ?? 'string';
  if (!(BOUND_CLAIMS_TYPES as readonly string[]).includes(boundClaimsType)) fail('VALIDATION_FAILED', 'oidc.boundClaimsType is string or glob');
  for (const key of keys) assertBoundValue(key, claims[key], boundClaimsType as 'string' | 'glob');
  if (Buffer.byteLength(JSON.stringify(claims)) > MAX_CLAIMS_JSON_BYTES) fail('VALIDATION_FAILED', `oidc.claims is larger than ${MAX_CLAIMS_JSON_BYTES} bytes`);
  const subject = input.subject ?? null;
  // A shared issuer (GitHub Actions, a cloud's workload identity) signs tokens for everyone who uses
  // it: issuer and audience alone would admit any of them.
  if (!bindsCaller({ subject, claims })) {
    fail('VALIDATION_FAILED', 'an oidc identity must bind oidc.subject or at least one oidc.claims entry (e.g. repository), or any caller of a shared identity provider could use it');
  }
  const maxAgeSeconds = input.maxAgeSeconds ?? DEFAULT_OIDC_MAX_AGE_SECONDS;
  if (!Number.isInteger(maxAgeSeconds) || maxAgeSeconds < MIN_OIDC_MAX_AGE_SECONDS || maxAgeSeconds > MAX_OIDC_MAX_AGE_SECONDS) {
    fail('VALIDATION_FAILED', `oidc.maxAgeSeconds must be a whole number from ${MIN_OIDC_MAX_AGE_SECONDS} to ${MAX_OIDC_MAX_AGE_SECONDS}`);
  }
  return {
    issuer: input.issuer,
    jwksUrl,
    audience: input.audience,
    subject,
    claims,
    boundClaimsType: boundClaimsType as 'string' | 'glob',
    maxAgeSeconds,
  };
}
