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
}

export interface Authenticator {
  authenticate(credential: string): Promise<Principal | null>;
}

/** Dispatches a bearer credential to the source whose prefix it carries; unknown shapes are simply not authenticated. */
export function createAuthenticator(sources: CredentialSource[]): Authenticator {
  return {
    async authenticate(credential) {
      if (credential.length > 512) return null;
      const source = sources.find((s) => credential.startsWith(s.prefix));
      return source ? source.authenticate(credential) : null;
    },
  };
}
