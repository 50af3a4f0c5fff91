import type { Kysely } from 'kysely';
import { fail, KeyholdError } from '../../errors/index.ts';
import { failureCode } from '../../storage/db-errors.ts';
import { writePrivateFile } from '../../platform/private-file.ts';
import type { Database } from '../../storage/schema.ts';
import type { AppendOnlyGuarantee } from '../../storage/postgres/privileges.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import type { SealManager } from './seal-manager.ts';
import { createSystemMetaRepository } from './system-meta-repository.ts';
import { auditFrom, type AuditInput, type AuditLog } from '../audit/audit-log.ts';
import type { RequestContext } from '../shared/context.ts';

export const DEV_ROOT_TOKEN_FILE = 'dev-root-token';

/**
 * Initialisation: root key (shown as shares once), the default tenant with its KEK, and the root
 * token (shown once), committed in one transaction with the seal config: a crash leaves either a
 * fully initialised server or an uninitialised one. Shamir mode ends sealed; dev mode stays
 * unsealed and keeps its key and root token in the data directory.
 */
export function createSystemService(deps: {
  db: Kysely<Database>; seal: SealManager; tenants: TenantService; tokens: TokenService; dataDir: string;
  audit: Pick<AuditLog, 'appendInTx' | 'record' | 'health'>;
  /** What keeps the audit tables append-only against the server's database user (read once at start). */
  auditAppendOnly: AppendOnlyGuarantee;
  /** Whether the last checkpoint was refused because the log holds an event the server did not write. */
  auditTampered?: () => boolean;
}) {
  const { db, seal, tenants, tokens, dataDir, audit, auditAppendOnly } = deps;
  const auditState = () => ({ auditWritable: audit.health().writable, auditAppendOnly, auditTampered: deps.auditTampered?.() ?? false });
  const systemEvent = (action: string, outcome: 'allowed' | 'denied' | 'failed', context: Record<string, string>, actor: AuditInput['actor'] = { type: 'system', id: 'keyhold' }): AuditInput => ({
    tenantId: null, actor, action, resource: { type: 'system', id: null, name: null }, outcome, context,
  });

  /**
   * Records an allowed unseal; only once that event is durable, and only if `open` (this call staged
   * the key), does a staged root key go live (true if one did). If it cannot be recorded, `undo`
   * seals the server again, and the error goes on.
   */
  async function recordUnseal(context: Record<string, string>, undo: boolean, open: boolean): Promise<boolean> {
    try {
      await audit.record([systemEvent('system.unseal', 'allowed', context)]);
    } catch (err) {
      if (undo) seal.seal();
      throw err;
    }
    return open && seal.openStaged();
  }

  return {
    /**
     * Seal state, whether the audit log takes events (while it does not, every audited action is
     * refused), whether database privileges or only a trigger keep it append-only, and whether the
     * checkpointer found an event the server did not write (and so signs nothing until it is dealt with).
     */
    async status() {
      return { ...(await seal.status()), ...auditState() };
    },

    async initialize(opts: { type: 'shamir' | 'dev'; shares: number; threshold: number }) {
      let rootToken = '';
      const { shares } = await seal.initialize(opts, (config) => db.transaction().execute(async (trx) => {
        if (!(await createSystemMetaRepository(trx).claimSealConfig(config))) fail('ALREADY_INITIALIZED', 'the server is already initialised');
        await tenants.create('default', { trx });
        rootToken = (await tokens.issue({ tenantId: null, kind: 'root', name: 'root' }, trx)).token;
        await audit.appendInTx(trx, [systemEvent('system.init', 'allowed', { sealType: opts.type, shares: String(opts.shares), threshold: String(opts.threshold) })]);
      }));
      if (opts.type === 'dev') {
        await writePrivateFile(dataDir, DEV_ROOT_TOKEN_FILE, rootToken + '\n');
      } else {
        seal.seal();
      }
      return { shares, threshold: opts.threshold, rootToken };
    },

    /**
     * One share; the outcome (progress, unsealed, or a failed reconstruction) is an event. Never the
     * share. The share that completes the threshold opens the server only once its event is durable
     * (the key waits staged meanwhile). A share whose event cannot be recorded does not count: the
     * server seals again (dropping the progress and any staged key) and the caller gets AUDIT_UNAVAILABLE.
     */
    async unseal(share: string) {
      const wasSealed = seal.isSealed();
      let status;
      try {
        status = await seal.submitShare(share);
      } catch (err) {
        const code = failureCode(err);
        await audit.record([systemEvent('system.unseal', code === 'UNSEAL_FAILED' ? 'denied' : 'failed', { reason: code })]).catch(() => {});
        throw err;
      }
      // Only undo what this call did: a share sent to a server that was already unsealed changed nothing.
      // Only the share that completed the threshold opens, once its own event is durable: a call that
      // came while that event was still being written must not open the server ahead of it.
      const completed = wasSealed && !status.sealed;
      // A call to a server already unsealed (or unsealing) was not counted; its event must not read like the unseal.
      const counted = completed || status.progress > 0;
      const context = { progress: String(status.progress), sealed: String(status.sealed), ...(counted ? {} : { counted: 'false' }) };
      const opened = await recordUnseal(context, wasSealed, completed);
      // A seal between the share and here dropped the staged key: the answer is the server's state.
      if (!status.sealed && wasSealed && !opened) status = await seal.status();
      return { ...status, ...auditState() };
    },

    /**
     * Dev mode at start-up: unseals from the key file, as an event like any other unseal. If the
     * event cannot be recorded the server stays sealed and this throws. False if there is no key file.
     */
    async unsealFromDevKey(): Promise<boolean> {
      if (!(await seal.unsealFromDevKey())) return false;
      return recordUnseal({ method: 'dev-key', sealed: 'false' }, true, true);
    },

    /**
     * Root revokes any live token, of any tenant or root's own; the event goes to the token's tenant
     * (where its auditors look) in the same transaction as the revocation.
     */
    async revokeToken(by: RequestContext, tokenId: string): Promise<void> {
      await db.transaction().execute(async (trx) => {
        const { tenantId } = await tokens.revoke(tokenId, null, trx);
        await audit.appendInTx(trx, [{ ...auditFrom({ ...by, tenantId }), action: 'auth.token-revoke', resource: { type: 'token', id: tokenId, name: null }, outcome: 'allowed' }]);
      });
      // Again after commit: a lookup between the revoke and the commit may have cached the token as live.
      tokens.forgetToken(tokenId);
    },

    /** Every root token, live or revoked (a revoked one is a record of who held the keys to everything), oldest first. */
    async rootTokens(currentId: string | null) {
      const rows = await db.selectFrom('tokens').select(['id', 'created_at', 'revoked_at']).where('kind', '=', 'root').orderBy('created_at').orderBy('id').execute();
      return rows.map((t) => ({
        id: t.id, createdAt: new Date(Number(t.created_at)).toISOString(),
        revokedAt: t.revoked_at === null ? null : new Date(Number(t.revoked_at)).toISOString(), current: t.id === currentId,
      }));
    },

    /**
     * Seals, and records who sealed (the caller's token id). The event is recorded under the key the
     * seal drops (so it carries a MAC like any other), but sealing is the protective direction and
     * never waits on the audit log: if the event cannot be recorded the server stays sealed and the
     * caller gets AUDIT_UNAVAILABLE, whose message says the server is sealed. A server already sealed
     * (or still between its last share and opening) drops its staged key and shares given so far, and
     * records nothing: it has no key to record under.
     */
    async seal(actor: AuditInput['actor']) {
      if (seal.isSealed()) {
        seal.seal();
        return;
      }
      const recorded = audit.record([systemEvent('system.seal', 'allowed', {}, actor)]);
      seal.seal();
      try {
        await recorded;
      } catch (err) {
        throw new KeyholdError('AUDIT_UNAVAILABLE', 'the server is sealed, but the audit log could not record the seal event', { cause: (err as Error).message });
      }
    },

    /**
     * Records that a graceful stop is about to seal this node (by the system, with the signal), for the
     * stop to write before its last checkpoint so the checkpoint covers it. The stop seals whether or
     * not this can be recorded: sealing is the protective direction.
     */
    async recordShutdownSeal(signal: string) {
      if (seal.isSealed()) return;
      await audit.record([systemEvent('system.seal', 'allowed', { reason: 'SHUTDOWN', signal })]);
    },
  };
}

export type SystemService = ReturnType<typeof createSystemService>;
