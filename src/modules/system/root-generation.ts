import type { Kysely } from 'kysely';
import { randomUUID } from 'node:crypto';
import { randomKey, wipe } from '../../crypto/bytes.ts';
import { encodeRootToken } from '../../crypto/root/otp.ts';
import { fail, KeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { failureCode } from '../../storage/db-errors.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditInput, AuditLog } from '../audit/audit-log.ts';
import type { TokenService } from '../auth/token-service.ts';
import { signInContext, type RequestSource } from '../identity/request-source.ts';
import type { SealManager } from './seal-manager.ts';
import { createShareCollector, type ShareCollector } from './share-collector.ts';
import type { SystemMetaRepository } from './system-meta-repository.ts';

/** An attempt nobody finishes ends on its own: shares given to it are not kept in memory indefinitely. */
export const GENERATE_ROOT_TTL_MS = 60 * 60 * 1000;

export interface RootGenerationStatus {
  started: boolean;
  /** Names the attempt: share holders check it with whoever started it before giving a share. */
  nonce: string | null;
  progress: number;
  threshold: number;
  expiresAt: string | null;
}

interface Attempt {
  nonce: string;
  /** The one-time key the new token is sealed under; shown once, to whoever started the attempt. */
  otp: Buffer;
  expiresAt: number;
  /** Whether its start event is durable: until then it takes no share (and holds the slot, so no other starts). */
  open: boolean;
  shares: ShareCollector;
  /** The events of the shares counted so far: the completing share waits for them, as a share counts only once recorded. */
  recorded: Array<Promise<void>>;
}

/**
 * A new root token from a threshold of unseal shares (as Vault's generate-root): the way back
 * after the root token was revoked, lost or leaked, with no credential but the shares. One attempt
 * at a time, per process (like unseal progress). Whoever starts it gets a nonce and a one-time
 * key; each holder gives a share naming the nonce; the share that completes the threshold gets
 * the new token sealed under that key, which only the starter can open (`keyhold generate-root
 * decode`). The server must be unsealed; every step is an event, durable before it counts, and
 * the token is issued in the transaction of its event.
 */
export function createRootGeneration(deps: {
  db: Kysely<Database>; clock: Clock; tokens: Pick<TokenService, 'issue'>;
  meta: Pick<SystemMetaRepository, 'getSealConfig'>; seal: Pick<SealManager, 'isSealed' | 'onSeal'>;
  audit: Pick<AuditLog, 'record' | 'appendInTx'>;
}) {
  const { db, clock, tokens, meta, seal, audit } = deps;
  let attempt: Attempt | null = null;
  /** Moves on every seal: a completion a seal overtook must not issue its token, even if the server is unsealed again by then. */
  let seals = 0;

  function end(): void {
    if (!attempt) return;
    attempt.shares.drop();
    wipe(attempt.otp);
    attempt = null;
  }
  // Sealing drops every key in memory; shares given towards a token go with them.
  seal.onSeal(() => {
    seals++;
    end();
  });

  /** The live attempt, after ending one that ran out of time. */
  function live(): Attempt | null {
    if (attempt && attempt.expiresAt <= clock.now()) end();
    return attempt;
  }

  const event = (source: RequestSource, action: string, outcome: AuditInput['outcome'], extra: Record<string, string>, reason?: string): AuditInput => ({
    tenantId: null, actor: { type: 'anonymous', id: 'unknown' }, action, resource: { type: 'system', id: null, name: null },
    outcome, ...(reason ? { reason } : {}), context: signInContext(source, extra),
  });

  /** Shamir config of an unsealed server, or the error that says why there is none. */
  async function shamirConfig() {
    const config = (await meta.getSealConfig()) ?? fail('NOT_INITIALIZED', 'the server has not been initialised');
    if (seal.isSealed()) fail('SEALED', 'the server is sealed; unseal it before generating a root token');
    if (config.type !== 'shamir') fail('VALIDATION_FAILED', 'a dev-mode server has no unseal shares; its root token is in the data directory');
    return config;
  }

  async function status(): Promise<RootGenerationStatus> {
    const config = await meta.getSealConfig();
    const a = live();
    return {
      started: a !== null, nonce: a?.nonce ?? null, progress: a?.shares.count ?? 0, threshold: config?.threshold ?? 0,
      expiresAt: a ? new Date(a.expiresAt).toISOString() : null,
    };
  }

  /** Issues the token in the transaction of its event, then seals it under the attempt's one-time key. */
  async function complete(source: RequestSource, a: Attempt, threshold: number) {
    const epoch = seals;
    try {
      const key = await a.shares.combine();
      if (!key) fail('UNSEAL_FAILED', 'the shares do not reconstruct the root key (one is wrong or tampered); start again');
      if ((await Promise.allSettled(a.recorded)).some((r) => r.status === 'rejected')) {
        fail('AUDIT_UNAVAILABLE', 'a share given to this generation could not be recorded, so the shares do not count; start again');
      }
      const issued = await db.transaction().execute(async (trx) => {
        const t = await tokens.issue({ tenantId: null, kind: 'root', name: 'root' }, trx);
        await audit.appendInTx(trx, [{ ...event(source, 'system.generate-root', 'allowed', { nonce: a.nonce, progress: String(threshold) }), resource: { type: 'token', id: t.id, name: null } }]);
        // Last, before the commit: a seal at any await above rolls the token back.
        if (seals !== epoch) fail('SEALED', 'the server was sealed while the new root token was being made; unseal it and start again');
        return t;
      });
      return { started: false, nonce: a.nonce, progress: threshold, threshold, complete: true, tokenId: issued.id, encodedToken: encodeRootToken(a.otp, a.nonce, issued.token) };
    } finally {
      wipe(a.otp);
    }
  }

  return {
    status,

    /** Ends an attempt that ran out of time even if nobody calls again (run with the key sweep): its shares leave memory. */
    sweep(): void {
      live();
    },

    /** Starts an attempt: its nonce and one-time key (shown once). GENERATE_ROOT_IN_PROGRESS while one is live. */
    async start(source: RequestSource) {
      const config = await shamirConfig();
      if (live()) fail('GENERATE_ROOT_IN_PROGRESS', 'a root token generation is already in progress; finish or cancel it first');
      // A UUID, as Vault's: base64url could start with '-', which a command line reads as a flag (`--nonce -x…`).
      const a: Attempt = { nonce: randomUUID(), otp: randomKey(32), expiresAt: clock.now() + GENERATE_ROOT_TTL_MS, open: false, shares: createShareCollector(config), recorded: [] };
      // Claimed before the event is written (no await since the check): a second start in the meantime is refused.
      attempt = a;
      try {
        await audit.record([event(source, 'system.generate-root-start', 'allowed', { nonce: a.nonce, expiresAt: new Date(a.expiresAt).toISOString() })]);
      } catch (err) {
        if (attempt === a) end();
        throw err;
      }
      // A seal or a cancel while the event was written ended it (and wiped its key): that is the answer.
      if (attempt !== a) {
        if (seal.isSealed()) fail('SEALED', 'the server was sealed while the generation was starting; unseal it and start again');
        fail('GENERATE_ROOT_NOT_STARTED', 'the generation was cancelled while it was starting; start again');
      }
      a.open = true;
      return { nonce: a.nonce, otp: a.otp.toString('base64url'), progress: 0, threshold: config.threshold, expiresAt: new Date(a.expiresAt).toISOString() };
    },

    /**
     * Ends the attempt and forgets its shares; false if there was none. Like a seal, the protective
     * direction does not wait on the audit log: if the event cannot be recorded the attempt is still
     * over, and the AUDIT_UNAVAILABLE the caller gets says so (not that the cancel was refused).
     */
    async cancel(source: RequestSource): Promise<boolean> {
      const a = live();
      if (!a) return false;
      end();
      try {
        await audit.record([event(source, 'system.generate-root-cancel', 'allowed', { nonce: a.nonce })]);
      } catch (err) {
        throw new KeyholdError('AUDIT_UNAVAILABLE', 'the root token generation is cancelled, but the audit log could not record the cancel', { cause: (err as Error).message });
      }
      return true;
    },

    /**
     * One share towards the attempt named by `nonce`. Counted only once its event is durable (if it
     * cannot be recorded the attempt ends). The share that completes the threshold ends the attempt
     * and gets the new token, encoded; a set that does not reconstruct the root key ends it too.
     */
    async submit(source: RequestSource, nonce: string, share: string) {
      const config = await shamirConfig();
      const a = live();
      if (!a?.open) fail('GENERATE_ROOT_NOT_STARTED', 'no root token generation is in progress; start one first');
      if (a.nonce !== nonce) fail('GENERATE_ROOT_NONCE_MISMATCH', 'this nonce does not name the generation in progress; check it with whoever started it');
      let done: boolean;
      try {
        done = a.shares.add(share);
      } catch (err) {
        await audit.record([event(source, 'system.generate-root-share', 'denied', { nonce }, failureCode(err))]).catch(() => {});
        throw err;
      }
      if (done) {
        // Taken whole before any await: no other share counts towards it from here.
        attempt = null;
        try {
          return await complete(source, a, config.threshold);
        } catch (err) {
          const code = failureCode(err);
          await audit.record([event(source, 'system.generate-root', code === 'UNSEAL_FAILED' ? 'denied' : 'failed', { nonce }, code)]).catch(() => {});
          throw err;
        } finally {
          a.shares.drop();
        }
      }
      const progress = a.shares.count;
      const recorded = audit.record([event(source, 'system.generate-root-share', 'allowed', { nonce, progress: String(progress) })]);
      a.recorded.push(recorded);
      try {
        await recorded;
      } catch (err) {
        if (attempt === a) end();
        throw err;
      }
      return { started: true, nonce, progress, threshold: config.threshold, complete: false };
    },
  };
}

export type RootGeneration = ReturnType<typeof createRootGeneration>;
