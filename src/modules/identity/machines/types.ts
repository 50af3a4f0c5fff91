import type { BoundClaimsType } from './claim-match.ts';

/** How a machine identity proves itself: a client secret it holds, or a JWT from an identity provider it trusts. */
export const MACHINE_KINDS = ['client_secret', 'oidc'] as const;
export type MachineKind = (typeof MACHINE_KINDS)[number];

/** What an OIDC identity trusts: tokens from this issuer, signed by keys at this JWKS URL, for this audience. */
export interface OidcBinding {
  issuer: string;
  jwksUrl: string;
  audience: string;
  /** When set, the token's `sub` must equal it. */
  subject: string | null;
  /** Every entry must appear in the token with a value that matches it (see `boundClaimsType`). */
  claims: Record<string, unknown>;
  /** How claims compare: any of a list of exact values, `*` globs, or (saved before 028) whole JSON values. */
  boundClaimsType: BoundClaimsType;
  /** A token is accepted at most this long after its `iat`, whatever its `exp` says. */
  maxAgeSeconds: number;
}

/** A machine identity as admins see it. Never carries the client secret or its hash. */
export interface MachineIdentity {
  id: string;
  name: string;
  kind: MachineKind;
  /** Public identifier named in token exchanges; globally unique. */
  clientId: string;
  tokenTtlSeconds: number;
  ownerUserId: string | null;
  oidc: OidcBinding | null;
  createdAt: string;
  disabledAt: string | null;
}

/** A live access token of an identity (never the token itself: only its hash is stored). */
export interface MachineToken {
  id: string;
  createdAt: string;
  expiresAt: string | null;
}

export interface CreateMachineInput {
  name: string;
  kind: MachineKind;
  tokenTtlSeconds?: number;
  ownerUserId?: string;
  oidc?: { issuer: string; jwksUrl: string; audience: string; subject?: string; claims?: Record<string, unknown>; boundClaimsType?: string; maxAgeSeconds?: number };
}

/** The result of creating or rotating a client-secret identity: the secret, shown this once. */
export type MachineWithSecret = MachineIdentity & { clientSecret?: string };

export const CLIENT_CREDENTIALS_GRANT = 'client_credentials';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** An OAuth-style token request (RFC 6749 §4.4, RFC 7523 §2.1), as JSON. */
export interface TokenRequest {
  grant_type: typeof CLIENT_CREDENTIALS_GRANT | typeof JWT_BEARER_GRANT;
  client_id: string;
  client_secret?: string;
  assertion?: string;
}

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

/** Token lifetimes an admin may choose: at least a minute, at most a day (machine tokens are short-lived). */
export const MIN_TOKEN_TTL_SECONDS = 60;
export const MAX_TOKEN_TTL_SECONDS = 86_400;

/**
 * How long after its `iat` an identity provider's JWT may be exchanged, unless the identity says
 * otherwise: an hour covers GitHub Actions, GitLab, GCP, Azure and Kubernetes' default projected
 * tokens (refreshed within the hour); a stolen or leaked JWT with a far-off `exp` stops working an
 * hour after it was issued. At most a day (EKS projects 24-hour tokens).
 */
export const DEFAULT_OIDC_MAX_AGE_SECONDS = 3_600;
export const MIN_OIDC_MAX_AGE_SECONDS = 60;
export const MAX_OIDC_MAX_AGE_SECONDS = 86_400;
