import type { Kysely } from 'kysely';
import { fail } from '../../../errors/index.ts';
import { addressBlock } from '../../../platform/addresses.ts';
import type { Clock } from '../../../platform/clock.ts';
import { createRateLimiter } from '../../../platform/rate-limiter.ts';
import type { Database, MachineIdentitiesTable } from '../../../storage/schema.ts';
import type { Executor } from '../../../storage/database.ts';
import type { AuditLog } from '../../audit/audit-log.ts';
import type { IdentifierHasher } from '../../audit/identifiers.ts';
import type { IssueTokenOptions } from '../../auth/token-service.ts';
import { clientSecretMatches } from './client-secret.ts';
import type { MachineRepository } from './machine-repository.ts';
import { bindingOf } from './machine-row.ts';
import type { OidcVerifier } from './oidc-verifier.ts';
import { signInContext, type RequestSource } from '../request-source.ts';
import { CLIENT_CREDENTIALS_GRANT, JWT_BEARER_GRANT, type TokenRequest, type TokenResponse } from './types.ts';

export interface ExchangeLimits {
  /**
   * Attempts per client id from one source address per window; a successful exchange there clears
   * the count. Keyed by address too, so someone who knows a client id (it is not a secret) cannot,
   * from elsewhere, stop the machine getting tokens.
   */
  perClient: number;
  /** Attempts per client id from every address together per window, successful or not: the ceiling on guessing spread over many addresses. */
  perClientTotal: number;
  /** Attempts per source address (an IPv6 client's /64) per window, successful or not. */
  perIp: number;
  windowMs: number;
}

export const DEFAULT_EXCHANGE_LIMITS: ExchangeLimits = { perClient: 10, perClientTotal: 300, perIp: 100, windowMs: 60_000 };

/**
 * An exchange either yields a token or is refused. The refusal's `detail` is for the operator's
 * log only: the caller gets the same INVALID_CREDENTIALS whatever went wrong.
 */
export type ExchangeResult =
  | { ok: true; token: TokenResponse }
  | { ok: false; reason: 'rate_limited'; retryAfterMs: number }
  | { ok: false; reason: 'invalid'; detail: string };

/**
 * `notAfter`: a bound on the token's expiry from the credential itself (a JWT's exp, or its max age after its iat if sooner), if it has one.
 * `workload`: what the credential says about who holds it (a JWT's sub and jti), for the audit event.
 */
type Check = { ok: true; notAfter?: number; workload?: Record<string, string> } | { ok: false; reason: string };

/** Claims recorded in the audit event are the IdP's, but long: a few hundred characters identify a workload. */
const MAX_AUDITED_CLAIM = 256;
const audited = (value: string) => (value.length > MAX_AUDITED_CLAIM ? `${value.slice(0, MAX_AUDITED_CLAIM)}…` : value);

function assertShape(request: TokenRequest): void {
  if (request.grant_type === CLIENT_CREDENTIALS_GRANT) {
    if (request.client_secret === undefined) fail('VALIDATION_FAILED', 'grant_type client_credentials needs client_secret');
    if (request.assertion !== undefined) fail('VALIDATION_FAILED', 'assertion belongs to the jwt-bearer grant');
  } else if (request.grant_type === JWT_BEARER_GRANT) {
    if (request.assertion === undefined) fail('VALIDATION_FAILED', `grant_type ${JWT_BEARER_GRANT} needs assertion`);
    if (request.client_secret !== undefined) fail('VALIDATION_FAILED', 'client_secret belongs to the client_credentials grant');
  } else {
    fail('VALIDATION_FAILED', `grant_type must be ${CLIENT_CREDENTIALS_GRANT} or ${JWT_BEARER_GRANT}`);
  }
}

/**
 * POST /v1/auth/token: a machine proves itself with its client secret or with a JWT from the
 * identity provider its identity trusts, and gets a short-lived access token. Rate limited per
 * client id and per source address; every failure looks the same to the caller.
 */
export function createTokenExchange(deps: {
  db: Kysely<Database>;
  repo: MachineRepository;
  tokens: { issue(opts: IssueTokenOptions, executor?: Executor): Promise<{ id: string; token: string; expiresAt: number | null }> };
  oidc: OidcVerifier;
  clock: Clock;
  limits?: ExchangeLimits;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  identifiers: IdentifierHasher;
}) {
  const { db, repo, tokens, oidc, clock, audit, identifiers } = deps;

  /** A refused exchange is an event; a client id that matches no identity is stored only as a keyed hash. */
  async function refused(request: TokenRequest, row: MachineIdentitiesTable | undefined, reason: string, source: RequestSource): Promise<void> {
    await audit.record([{
      tenantId: row?.tenant_id ?? null, actor: { type: 'anonymous', id: row ? row.id : identifiers.hash(request.client_id) },
      action: 'auth.token', resource: { type: 'machine', id: row?.id ?? null, name: row?.name ?? null },
      outcome: 'denied', reason, context: signInContext(source, { grantType: request.grant_type }),
    }]);
  }
  const limits = deps.limits ?? DEFAULT_EXCHANGE_LIMITS;
  const byClient = createRateLimiter({ limit: limits.perClient, windowMs: limits.windowMs, clock });
  const byClientTotal = createRateLimiter({ limit: limits.perClientTotal, windowMs: limits.windowMs, clock });
  const byIp = createRateLimiter({ limit: limits.perIp, windowMs: limits.windowMs, clock });

  function checkSecret(row: MachineIdentitiesTable | undefined, secret: string): Check {
    // Compared even for an unknown client, so that answer takes the same work as a wrong secret.
    const matches = clientSecretMatches(secret, row?.kind === 'client_secret' ? row.client_secret_hash : null);
    if (!row) return { ok: false, reason: 'unknown client' };
    if (row.kind !== 'client_secret') return { ok: false, reason: 'client secret presented for an oidc identity' };
    if (row.disabled_at !== null) return { ok: false, reason: 'identity disabled' };
    return matches ? { ok: true } : { ok: false, reason: 'wrong client secret' };
  }

  async function checkAssertion(row: MachineIdentitiesTable | undefined, assertion: string): Promise<Check> {
    if (!row) return { ok: false, reason: 'unknown client' };
    const binding = bindingOf(row);
    if (!binding) return { ok: false, reason: 'assertion presented for a client-secret identity' };
    if (row.disabled_at !== null) return { ok: false, reason: 'identity disabled' };
    const verified = await oidc.verify(binding, assertion);
    if (!verified.ok) return { ok: false, reason: `assertion refused: ${verified.reason}` };
    // An identity bound by claims alone (a repository) admits many subjects (its branches, its runs): the event says which.
    const workload: Record<string, string> = {};
    if (verified.subject !== null) workload.jwtSubject = audited(verified.subject);
    if (verified.jwtId !== null) workload.jwtId = audited(verified.jwtId);
    return { ok: true, notAfter: verified.notAfter, workload };
  }

  return {
    async exchange(request: TokenRequest, source: RequestSource): Promise<ExchangeResult> {
      assertShape(request);
      identifiers.hash(''); // refuses with SEALED before any work: a sealed server issues nothing
      const block = addressBlock(source.sourceIp);
      const clientTotalKey = `token:client:${request.client_id}`;
      const clientKey = `${clientTotalKey}\u0000${block}`;
      for (const [limiter, key] of [[byIp, `token:ip:${block}`], [byClient, clientKey], [byClientTotal, clientTotalKey]] as const) {
        const hit = limiter.hit(key);
        if (!hit.allowed) {
          await refused(request, undefined, 'RATE_LIMITED', source);
          return { ok: false, reason: 'rate_limited', retryAfterMs: hit.retryAfterMs };
        }
      }

      const row = await repo.findByClientId(request.client_id);
      const check = request.grant_type === CLIENT_CREDENTIALS_GRANT
        ? checkSecret(row, request.client_secret!)
        : await checkAssertion(row, request.assertion!);
      if (!check.ok || !row) {
        await refused(request, row, 'INVALID_CREDENTIALS', source);
        return { ok: false, reason: 'invalid', detail: check.ok ? 'unknown client' : check.reason };
      }

      // A token from a JWT ends when the JWT would no longer be taken, if that is sooner than the identity's
      // TTL: exchanging a short-lived assertion (GitHub's last minutes) must not stretch a stolen one into a day.
      // Positive when verified (a JWT past exp plus skew was refused); a clock that moved on since can bring it
      // to zero or less, and the token is then born expired (token-service), never without an expiry.
      const ttlMs = check.notAfter === undefined ? row.token_ttl_ms : Math.min(row.token_ttl_ms, check.notAfter - clock.now());

      // Issue only if the identity is still live and its secret unchanged, under a lock a concurrent
      // disable or rotation must wait for (so a token can never outlive the disable that raced it).
      const issued = await db.transaction().execute(async (trx) => {
        const live = await repo.lockLive(trx, row.id, row.kind === 'client_secret' ? row.client_secret_hash : null);
        if (!live) return null;
        const token = await tokens.issue({ tenantId: row.tenant_id, kind: 'machine', principalId: row.id, name: row.name, ttlMs }, trx);
        await audit.appendInTx(trx, [{
          tenantId: row.tenant_id, actor: { type: 'machine', id: row.id }, action: 'auth.token', resource: { type: 'machine', id: row.id, name: row.name },
          outcome: 'allowed', context: signInContext(source, { grantType: request.grant_type, tokenId: token.id, ...check.workload }, token.id),
        }]);
        return token;
      });
      if (!issued) {
        await refused(request, row, 'INVALID_CREDENTIALS', source);
        return { ok: false, reason: 'invalid', detail: 'identity disabled or secret rotated during the exchange' };
      }
      byClient.reset(clientKey);
      return { ok: true, token: { access_token: issued.token, token_type: 'Bearer', expires_in: Math.floor(ttlMs / 1000) } };
    },
  };
}

export type TokenExchange = ReturnType<typeof createTokenExchange>;
