/** Who a bearer credential speaks for, resolved once per request by the authenticator. */
export type PrincipalType = 'root' | 'user' | 'machine';

export interface Principal {
  type: PrincipalType;
  /** User id, machine identity id, or (root) the token id. */
  id: string;
  /** Null only for root, which may act in every tenant. */
  tenantId: string | null;
  name: string;
  /** The session or token behind this request (what logout or revoke ends). */
  credentialId: string;
  /** Users: when a second factor was last verified in this session; null otherwise. */
  mfaAt: number | null;
  expiresAt: number | null;
  /**
   * Set only for a credential bound to one environment of its tenant (an automation run's token):
   * it admits the identity in that environment and nowhere else (see policy/environment-binding.ts).
   */
  boundEnvironment?: string;
}

/**
 * A credential that exists but no longer admits anyone: its id and tenant (never the credential)
 * so the refusal's audit event lands where that tenant's auditors look. A revoked token still in
 * use is a leak in progress.
 */
export interface DeadCredential {
  credentialId: string;
  tenantId: string | null;
  state: 'revoked' | 'expired' | 'disabled';
}

/** What a presented credential is: live (its principal), dead (which one and why), or nothing known (null). */
export type CredentialLookup = { principal: Principal } | { dead: DeadCredential } | null;

/** The principal of a lookup, or null for a dead or unknown credential (one answer for both). */
export function principalOf(lookup: CredentialLookup): Principal | null {
  return lookup !== null && 'principal' in lookup ? lookup.principal : null;
}

/** One kind of bearer credential (root token, user session, machine token), recognised by its prefix. */
export interface CredentialSource {
  prefix: string;
  /** One read answers both whether the credential admits anyone and, when it does not, why. */
  lookup(credential: string): Promise<CredentialLookup>;
  /**
   * The principal of a live credential, if it can be had from memory without waiting; undefined
   * when only `lookup` can tell.
   */
  cached?(credential: string): Principal | undefined;
}

export interface Authenticator {
  /** The principal, or null for unknown, expired, revoked or disabled alike. */
  authenticate(credential: string): Promise<Principal | null>;
  /** See CredentialSource.lookup; null for a credential of no known shape, that never existed, or whose row was swept. */
  lookup(credential: string): Promise<CredentialLookup>;
  /** See CredentialSource.cached: a principal at once, or undefined (then call `lookup`). */
  cached(credential: string): Principal | undefined;
}

/** Dispatches a bearer credential to the source whose prefix it carries; unknown shapes are simply not authenticated. */
export function createAuthenticator(sources: CredentialSource[]): Authenticator {
  const sourceOf = (credential: string) => (credential.length > 512 ? undefined : sources.find((s) => credential.startsWith(s.prefix)));
  async function lookup(credential: string): Promise<CredentialLookup> {
    return (await sourceOf(credential)?.lookup(credential)) ?? null;
  }
  return {
    lookup,
    async authenticate(credential) {
      return principalOf(await lookup(credential));
    },
    cached(credential) {
      return sourceOf(credential)?.cached?.(credential);
    },
  };
}
