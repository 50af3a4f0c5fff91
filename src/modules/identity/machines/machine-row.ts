import type { MachineIdentitiesTable } from '../../../storage/schema.ts';
import { DEFAULT_OIDC_MAX_AGE_SECONDS, type MachineIdentity, type MachineKind, type OidcBinding } from './types.ts';
import { isoTime as iso } from '../../../platform/clock.ts';

/** Rows of machine_identities to the shapes the services hand out. */

/** The stored OIDC binding of a row, or null for a client-secret identity. */
export function bindingOf(row: MachineIdentitiesTable): OidcBinding | null {
  if (row.kind !== 'oidc' || row.oidc_issuer === null || row.oidc_jwks_url === null || row.oidc_audience === null) return null;
  return {
    issuer: row.oidc_issuer,
    jwksUrl: row.oidc_jwks_url,
    audience: row.oidc_audience,
    subject: row.oidc_subject,
    claims: row.oidc_claims === null ? {} : (JSON.parse(row.oidc_claims) as Record<string, unknown>),
    // Rows saved before identities had a max age (null) get the default.
    // Rows saved before 028 (null) keep comparing each bound value whole, as they did when saved.
    boundClaimsType: row.oidc_bound_claims_type === 'string' || row.oidc_bound_claims_type === 'glob' ? row.oidc_bound_claims_type : 'exact',
    maxAgeSeconds: row.oidc_max_age_ms === null ? DEFAULT_OIDC_MAX_AGE_SECONDS : Math.round(Number(row.oidc_max_age_ms) / 1000),
  };
}

/** An identity as admins see it: never the secret hash. */
export function toMachineIdentity(row: MachineIdentitiesTable): MachineIdentity {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind as MachineKind,
    clientId: row.client_id,
    tokenTtlSeconds: Math.round(row.token_ttl_ms / 1000),
    ownerUserId: row.owner_user_id,
    oidc: bindingOf(row),
    createdAt: iso(row.created_at)!,
    disabledAt: iso(row.disabled_at),
  };
}
