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
}

/** One kind of bearer credential (root token, user session, machine token), recognised by its prefix. */
export interface CredentialSource {
  prefix: string;
  authenticate(credential: string): Promise<Principal | null>;
  /**
   * The answer `authenticate` would give, if it can be had from memory without waiting: the
   * principal of a live cached credential; undefined when only `authenticate` can tell.
   */
  cached?(credential: string): Principal | undefined;
  /** For a refused credential only: which one it was and why, if it ever existed (see DeadCredential). */
  dead?(credential: string): Promise<DeadCredential | null>;
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

export interface Authenticator {
  authenticate(credential: string): Promise<Principal | null>;
  /** See CredentialSource.cached: a principal at once, or undefined (then call `authenticate`). */
  cached(credential: string): Principal | undefined;
  /** See CredentialSource.dead; null for a credential that never existed (or whose row was swept). */
  dead(credential: string): Promise<DeadCredential | null>;
}

/** Dispatches a bearer credential to the source whose prefix it carries; unknown shapes are simply not authenticated. */
export function createAuthenticator(sources: CredentialSource[]): Authenticator {
  const sourceOf = (credential: string) => (credential.length > 512 ? undefined : sources.find((s) => credential.startsWith(s.prefix)));
  return {
    async authenticate(credential) {
      const source = sourceOf(credential);
      return source ? source.authenticate(credential) : null;
    },
    cached(credential) {
      return sourceOf(credential)?.cached?.(credential);
    },
    async dead(credential) {
      return (await sourceOf(credential)?.dead?.(credential)) ?? null;
    },
  };
}
