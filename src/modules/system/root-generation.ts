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
import type { AttemptClaim, RootGenerationLedger } from './root-generation-ledger.ts';
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
  /** Its row and start event being written (root-generation-ledger.ts): its claim once durable, null if they never were. */
  opened: Promise<AttemptClaim | null>;
}

/** Why an attempt ended with no token and no cancel: the `reason` of its `system.generate-root-end`. */
export type GenerateRootEndReason = 'EXPIRED' | 'SEALED' | 'SHUTDOWN' | 'AUDIT_UNAVAILABLE' | 'INTERRUPTED';

const SYSTEM_ACTOR: AuditInput['actor'] = { type: 'system', id: 'keyhold' };

/**
 * A new root token from a threshold of unseal shares (as Vault's generate-root): the way back
 * after the root token was revoked, lost or leaked, with no credential but the shares. One attempt
 * at a time, per process (like unseal progress). Whoever starts it gets a nonce and a one-time
 * key; each holder gives a share naming the nonce; the share that completes the threshold gets
 * the new token sealed under that key, which only the starter can open (`keyhold generate-root
 * decode`). The server must be unsealed; every step is an event, durable before it counts, and
 * the token is issued in the transaction of its event. Every attempt's trail ends in exactly one
 * event: the token's, a cancel, or `system.generate-root-end` (expiry, seal, stop, or found left
 * open by a process that died), which the ledger keeps in step with the log.
 */
export function createRootGeneration(deps: {
  db: Kysely<Database>; clock: Clock; tokens: Pick<TokenService, 'issue'>;
  meta: Pick<SystemMetaRepository, 'getSealConfig'>; seal: Pick<SealManager, 'isSealed' | 'onSeal'>;
  audit: Pick<AuditLog, 'appendInTx'>;
  ledger: Pick<RootGenerationLedger, 'open' | 'close' | 'remove' | 'isOpen' | 'closeAbandoned'>;
}) {
  const { db, clock, tokens, meta, seal, audit, ledger } = deps;
  let attempt: Attempt | null = null;
  /** Moves on every seal: a completion a seal overtook must not issue its token, even if the server is unsealed again by then. */
  let seals = 0;
  /** Nonces this process holds, from its start until its end is recorded: no sweep here takes them for leftovers. */
  const held = new Set<string>();
  /** Attempts ended in memory whose ending event is not recorded yet (sealed, log failing): each sweep tries again. */
  const ending = new Map<string, { event: AuditInput; opened: Promise<AttemptClaim | null>; closing: Promise<void> | null }>();

  /** Records an ending this process owes; if it cannot yet, it stays owed (and the attempt held) for the next sweep. */
  function settle(nonce: string): Promise<void> {
    const owed = ending.get(nonce);
    if (!owed) return Promise.resolve();
    owed.closing ??= (async () => {
      const claim = await owed.opened;
      // False when another process found it left open and closed it first: it is closed either way.
      if (claim) await ledger.close(nonce, owed.event);
      ending.delete(nonce);
      held.delete(nonce);
      await claim?.release().catch(() => {});
    })().finally(() => {
      owed.closing = null;
    });
    return owed.closing;
  }

  /** Ends `a` in the trail with `event`, once its start is durable. */
  function finish(a: Attempt, event: AuditInput): Promise<void> {
    ending.set(a.nonce, { event, opened: a.opened, closing: null });
    return settle(a.nonce);
  }

  /** Forgets the live attempt's shares and key; the caller records how it ended. */
  function drop(): Attempt | null {
    const a = attempt;
    if (!a) return null;
    a.shares.drop();
    wipe(a.otp);
    attempt = null;
    return a;
  }

  /**
   * Lets go of `a` once another process has recorded its end (on PostgreSQL, after this one lost the connection of its
   * lock): nothing is owed to its trail, and its claim, a lost lock, goes back.
   */
  function forget(a: Attempt): void {
    if (attempt === a) drop();
    // Ended here meanwhile: settle() finds it closed and lets go of it.
    if (ending.has(a.nonce)) return;
    held.delete(a.nonce);
    a.opened.then((claim) => claim?.release()).catch(() => {});
  }

  /**
   * Lets go of the live attempt if another process has ended it (this one lost its lock's connection), so it is not
   * shown, nor refuses a start, until a share, a cancel or its expiry. One read of its row, by the sweep and a start
   * only: status() reads nothing. An attempt whose start is still being written has no row to read yet.
   */
  async function forgetIfEndedElsewhere(): Promise<void> {
    const a = attempt;
    if (!a?.open) return;
    const open = await db.transaction().execute((trx) => ledger.isOpen(trx, a.nonce));
    // Still live here after the read: no end of this process's removed its row, another one did.
    if (!open && attempt === a) forget(a);
  }

  const notStarted: () => never = () => fail('GENERATE_ROOT_NOT_STARTED', 'no root token generation is in progress; start one first');
  const inProgress: () => never = () => fail('GENERATE_ROOT_IN_PROGRESS', 'a root token generation is already in progress; finish or cancel it first');

  /**
   * Records an event of a share given to `a` in one transaction with the check that `a` is still open. A process
   * that lost its lock (failover, a killed backend, idle_session_timeout) lives on, while another node ends its attempt
   * `INTERRUPTED`: then no share is recorded after that end; `a` is forgotten and the share refused as for no attempt.
   */
  async function recordShare(a: Attempt, input: AuditInput): Promise<void> {
    const open = await db.transaction().execute(async (trx) => {
      if (!(await ledger.isOpen(trx, a.nonce))) return false;
      await audit.appendInTx(trx, [input]);
      return true;
    });
    if (!open) {
      forget(a);
      notStarted();
    }
  }

  const ended = (nonce: string, reason: GenerateRootEndReason): AuditInput => ({
    tenantId: null, actor: SYSTEM_ACTOR, action: 'system.generate-root-end', resource: { type: 'system', id: null, name: null },
    outcome: 'allowed', reason, context: { nonce },
  });

  /** Ends the live attempt with no token; its end is recorded now if the log takes it, else by a later sweep. */
  function endLive(reason: GenerateRootEndReason): Promise<void> {
    const a = drop();
    return a ? finish(a, ended(a.nonce, reason)) : Promise.resolve();
  }

  // Sealing drops every key in memory; shares given towards a token go with them. A sealed log records nothing
  // but unseals, so the end is recorded by the first sweep after the next unseal.
  seal.onSeal(() => {
    seals++;
    endLive('SEALED').catch(() => {});
  });

  /** The live attempt, after ending one that ran out of time. */
  function live(): Attempt | null {
    if (attempt && attempt.expiresAt <= clock.now()) endLive('EXPIRED').catch(() => {});
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
      const unrecorded = (await Promise.allSettled(a.recorded)).find((r) => r.status === 'rejected');
      if (unrecorded) {
        // Ended by another node meanwhile: the answer for an attempt that is no more.
        if (failureCode(unrecorded.reason) === 'GENERATE_ROOT_NOT_STARTED') throw unrecorded.reason;
        fail('AUDIT_UNAVAILABLE', 'a share given to this generation could not be recorded, so the shares do not count; start again');
      }
      const issued = await db.transaction().execute(async (trx) => {
        // Its end, with the token: gone only if another process found it left open and ended it.
        if (!(await ledger.remove(trx, a.nonce))) fail('GENERATE_ROOT_NOT_STARTED', 'the generation was recorded as ended before its last share came; start again');
        const t = await tokens.issue({ tenantId: null, kind: 'root', name: 'root' }, trx);
        await audit.appendInTx(trx, [{ ...event(source, 'system.generate-root', 'allowed', { nonce: a.nonce, progress: String(threshold) }), resource: { type: 'token', id: t.id, name: null } }]);
        // Last, before the commit: a seal at any await above rolls the token back.
        if (seals !== epoch) fail('SEALED', 'the server was sealed while the new root token was being made; unseal it and start again');
        return t;
      });
      held.delete(a.nonce);
      await (await a.opened)?.release().catch(() => {});
      return { started: false, nonce: a.nonce, progress: threshold, threshold, complete: true, tokenId: issued.id, encodedToken: encodeRootToken(a.otp, a.nonce, issued.token) };
    } finally {
      wipe(a.otp);
    }
  }

  return {
    status,

    /**
     * Ends an attempt that ran out of time even if nobody calls again (its shares leave memory), and, while unsealed,
     * records the ends this process still owes, lets go of its own attempt if another process ended it, and ends the
     * attempts no live process holds (one a crash or kill -9 cut off) with `INTERRUPTED`; how many of those. Run at
     * unseal and with the key sweep.
     */
    async sweep(): Promise<number> {
      live();
      if (seal.isSealed()) return 0;
      await Promise.allSettled([...ending.keys()].map(settle));
      await forgetIfEndedElsewhere();
      return ledger.closeAbandoned((nonce) => held.has(nonce), (nonce) => ended(nonce, 'INTERRUPTED'));
    },

    /** A graceful stop: ends the attempt in progress (`SHUTDOWN`) and records the ends still owed, while the log is writable. */
    async stop(): Promise<void> {
      await endLive('SHUTDOWN').catch(() => {});
      await Promise.allSettled([...ending.keys()].map(settle));
    },

    /**
     * The storage is closing: lets go of every attempt this process holds, recording nothing, so no lock keeps a
     * connection pinned. An end still owed is then recorded (`INTERRUPTED`) by the next process that finds it.
     */
    async release(): Promise<void> {
      const claims = [...ending.values()].map((owed) => owed.opened);
      const a = drop();
      if (a) claims.push(a.opened);
      ending.clear();
      held.clear();
      await Promise.all(claims.map(async (opened) => (await opened)?.release().catch(() => {})));
    },

    /**
     * Starts an attempt: its nonce and one-time key (shown once). GENERATE_ROOT_IN_PROGRESS while one is live (not
     * one another process has ended); records the end still owed of the one before first (AUDIT_UNAVAILABLE if the
     * log does not take it).
     */
    async start(source: RequestSource) {
      const config = await shamirConfig();
      if (live()) {
        await forgetIfEndedElsewhere();
        if (live()) inProgress();
      }
      // One attempt at a time until its end is recorded: each holds a claim till then (PostgreSQL: a pinned pool
      // connection), so a burst of anonymous start/cancel pairs, or a log that fails at each end, cannot pin the pool.
      if (ending.size > 0) {
        await Promise.allSettled([...ending.keys()].map(settle));
        if (live()) inProgress();
        // Owed still: ended by another call meanwhile (being recorded now), or the log did not take it.
        if ([...ending.values()].some((owed) => owed.closing)) fail('GENERATE_ROOT_IN_PROGRESS', 'the end of the previous root token generation is being recorded; try again');
        if (ending.size > 0) fail('AUDIT_UNAVAILABLE', 'the end of the previous root token generation could not be recorded yet, so no other starts; try again once the audit log is writable');
      }
      // A UUID, as Vault's: base64url could start with '-', which a command line reads as a flag (`--nonce -x…`).
      const nonce = randomUUID();
      const expiresAt = clock.now() + GENERATE_ROOT_TTL_MS;
      const opening = ledger.open(nonce, event(source, 'system.generate-root-start', 'allowed', { nonce, expiresAt: new Date(expiresAt).toISOString() }));
      const opened = opening.then((claim) => claim, () => null);
      // Claimed before the event is written (no await since the check): a second start in the meantime is refused.
      const a: Attempt = { nonce, otp: randomKey(32), expiresAt, open: false, shares: createShareCollector(config), recorded: [], opened };
      attempt = a;
      held.add(nonce);
      try {
        await opening;
      } catch (err) {
        if (attempt === a) drop();
        if (!ending.has(nonce)) held.delete(nonce);
        throw err;
      }
      // A seal or a cancel while the event was written ended it (and wiped its key), and records its end: that is the answer.
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
      drop();
      try {
        await finish(a, event(source, 'system.generate-root-cancel', 'allowed', { nonce: a.nonce }));
      } catch (err) {
        throw new KeyholdError('AUDIT_UNAVAILABLE', 'the root token generation is cancelled, but the audit log could not record the cancel', { cause: (err as Error).message });
      }
      return true;
    },

    /**
     * One share towards the attempt named by `nonce`. Counted only once its event is durable (if it
     * cannot be recorded the attempt ends). The share that completes the threshold ends the attempt
     * and gets the new token, encoded; a set that does not reconstruct the root key ends it too. One another node
     * has ended (this one lost its lock's connection) is forgotten at its next share, refused as when there is none.
     */
    async submit(source: RequestSource, nonce: string, share: string) {
      const config = await shamirConfig();
      const a = live();
      if (!a?.open) notStarted();
      if (a.nonce !== nonce) fail('GENERATE_ROOT_NONCE_MISMATCH', 'this nonce does not name the generation in progress; check it with whoever started it');
      let done: boolean;
      try {
        done = a.shares.add(share);
      } catch (err) {
        // Refused either way; as for no attempt if it has ended meanwhile.
        throw await recordShare(a, event(source, 'system.generate-root-share', 'denied', { nonce }, failureCode(err)))
          .then(() => err, (unrecorded: unknown) => (failureCode(unrecorded) === 'GENERATE_ROOT_NOT_STARTED' ? unrecorded : err));
      }
      if (done) {
        // Taken whole before any await: no other share counts towards it from here.
        attempt = null;
        try {
          return await complete(source, a, config.threshold);
        } catch (err) {
          const code = failureCode(err);
          await finish(a, event(source, 'system.generate-root', code === 'UNSEAL_FAILED' ? 'denied' : 'failed', { nonce }, code)).catch(() => {});
          throw err;
        } finally {
          a.shares.drop();
        }
      }
      const progress = a.shares.count;
      const recorded = recordShare(a, event(source, 'system.generate-root-share', 'allowed', { nonce, progress: String(progress) }));
      a.recorded.push(recorded);
      try {
        await recorded;
      } catch (err) {
        if (attempt === a && failureCode(err) !== 'GENERATE_ROOT_NOT_STARTED') endLive('AUDIT_UNAVAILABLE').catch(() => {});
        throw err;
      }
      return { started: true, nonce, progress, threshold: config.threshold, complete: false };
    },
  };
}

export type RootGeneration = ReturnType<typeof createRootGeneration>;
