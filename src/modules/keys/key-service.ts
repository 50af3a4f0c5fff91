import type { Kysely } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail } from '../../errors/index.ts';
import { failureCode } from '../../storage/db-errors.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import type { TenantContext } from '../shared/context.ts';
import { createKekRepository } from './kek-repository.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { SealedRowCache } from '../secrets/sealed-row-cache.ts';
import { auditFrom, type AuditInput, type AuditLog } from '../audit/audit-log.ts';
import { resealTotpSecrets, rewrapTotpSecrets } from '../identity/users/totp-rewrap.ts';
import { resealValues, type ResealProgress } from './reseal-values.ts';

export interface KeyStatus {
  currentVersion: number;
  minDecryptionVersion: number;
  versions: Array<{ version: number; createdAt: string; retiredAt: string | null; dataKeys: number }>;
}

/**
 * Tenant KEK lifecycle: rotate (new version for new wraps), rewrap (every DEK moves to the current
 * version; values are not touched) or re-encrypt (a new version, and every value resealed under a
 * fresh DEK), then the minimum decryption version rises and old KEK material is deleted.
 */
export function createKeyService(deps: {
  db: Kysely<Database>; keyring: Keyring; authz: Authorizer; clock: Clock; rows: Pick<SealedRowCache, 'forgetTenant'>; audit: Pick<AuditLog, 'appendInTx' | 'record'>;
}) {
  const { db, keyring, authz, clock, rows, audit } = deps;
  /** A key event: versions and counts only, never key material. */
  const keyEvent = (ctx: TenantContext, action: string, context: Record<string, string>, failure?: string) => {
    const base = auditFrom(ctx);
    return [{
      ...base, action, resource: { type: 'tenant-key', id: ctx.tenantId, name: null }, context: { ...base.context, ...context },
      ...(failure === undefined ? { outcome: 'allowed' as const } : { outcome: 'failed' as const, reason: failure }),
    }];
  };

  async function status(ctx: TenantContext): Promise<KeyStatus> {
    const repo = createKekRepository(db);
    const state = (await repo.loadState(ctx.tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
    const counts = new Map((await repo.countDeksByVersion(ctx.tenantId)).map((r) => [r.kek_version, Number(r.count)]));
    const keks = await repo.listKeks(ctx.tenantId);
    return {
      currentVersion: state.current,
      minDecryptionVersion: state.min,
      versions: keks.map((k) => ({
        version: k.version,
        createdAt: new Date(k.created_at).toISOString(),
        retiredAt: k.retired_at === null ? null : new Date(k.retired_at).toISOString(),
        dataKeys: counts.get(k.version) ?? 0,
      })),
    };
  }

  /**
   * A rewrap or re-encrypt that stopped part way: its closing event, failed with the error's code and
   * how far it got (batches that committed stay committed, each with its event); then the error again.
   */
  async function recordFailure(ctx: TenantContext, action: string, context: Record<string, string>, err: unknown): Promise<never> {
    const reason = failureCode(err);
    await audit.record(keyEvent(ctx, action, context, reason)).catch(() => {});
    throw err;
  }

  /** Creates KEK version n+1, current for new data keys from its commit on; returns n+1. */
  async function newKekVersion(ctx: TenantContext): Promise<number> {
    const version = await db.transaction().execute(async (trx) => {
      const bumped = await trx.updateTable('tenants').set((eb) => ({ kek_version: eb('kek_version', '+', 1) }))
        .where('id', '=', ctx.tenantId).returning('kek_version').executeTakeFirst();
      if (!bumped) fail('TENANT_NOT_FOUND', 'tenant not found');
      const wrapped = keyring.newWrappedKek(ctx.tenantId, bumped.kek_version);
      await createKekRepository(trx).insertKek(ctx.tenantId, bumped.kek_version, wrapped, clock.now());
      await audit.appendInTx(trx, keyEvent(ctx, 'key.rotate', { kekVersion: String(bumped.kek_version) }));
      return bumped.kek_version;
    });
    keyring.invalidate(ctx.tenantId);
    return version;
  }

  /**
   * The end of a rewrap or re-encrypt, once every data key is under `version`: moves the TOTP
   * seeds too, raises the minimum decryption version and deletes the material of older KEKs, with
   * the operation's closing event (`closing`, given how many TOTP seeds moved) in that commit.
   * Returns how many TOTP seeds moved.
   */
  async function retireBelow(ctx: TenantContext, version: number, closing: (totpMoved: number) => AuditInput[]): Promise<number> {
    // Users' sealed TOTP secrets hang off the same KEKs: move them too, before the old KEKs go.
    const totp = await rewrapTotpSecrets(db, ctx.tenantId, await keyring.rewrapperFor(ctx.tenantId));
    const now = clock.now();
    // Before the transaction: on SQLite's one connection, loading keys inside it would wait on itself.
    const lateRewrap = await keyring.rewrapperFor(ctx.tenantId);
    const moved = await db.transaction().execute(async (trx) => {
      // The tenant row first: its lock waits out every write still proving its KEK current
      // (keys/current-kek.ts), so the check below sees what they wrote. Never lowered: a rewrap
      // to a later version may have finished while this one ran.
      await trx.updateTable('tenants')
        .set((eb) => ({ kek_min_version: eb.case().when('kek_min_version', '<', version).then(version).else(eb.ref('kek_min_version')).end() }))
        .where('id', '=', ctx.tenantId).execute();
      const stragglers = await trx.selectFrom('secret_versions').select('id')
        .where('tenant_id', '=', ctx.tenantId).where('kek_version', '<', version).where('wrapped_dek', 'is not', null)
        .limit(1).execute();
      if (stragglers.length > 0) fail('KEY_OPERATION_CONFLICT', 'data keys were written under an old key version meanwhile; run it again');
      // Again under the lock: a TOTP confirmation between the two column passes above can move a
      // pending secret, still under the old KEK, into the column already done. Retiring that KEK
      // would lock the user out; whatever is left moves here, in the same transaction.
      const late = await rewrapTotpSecrets(trx, ctx.tenantId, lateRewrap);
      await trx.updateTable('tenant_keks').set({ wrapped_key: null, retired_at: now })
        .where('tenant_id', '=', ctx.tenantId).where('version', '<', version).where('retired_at', 'is', null).execute();
      await audit.appendInTx(trx, closing(totp + late));
      return totp + late;
    });
    keyring.invalidate(ctx.tenantId);
    rows.forgetTenant(ctx.tenantId);
    return moved;
  }

  return {
    async status(ctx: TenantContext): Promise<KeyStatus> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      return status(ctx);
    },

    /** Creates KEK version n+1 and makes it the one new data keys are wrapped with. */
    async rotate(ctx: TenantContext): Promise<KeyStatus> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      await newKekVersion(ctx);
      return status(ctx);
    },

    /**
     * Rewraps every live DEK of the tenant under the current KEK, in batches, each row guarded by
     * its old key version (a concurrent writer or rewrap simply wins that row). When none remain
     * below the current version, raises the minimum decryption version and retires older KEKs.
     */
    async rewrap(ctx: TenantContext, opts: { batchSize?: number } = {}): Promise<KeyStatus & { rewrapped: number }> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const batchSize = opts.batchSize ?? 500;
      keyring.invalidate(ctx.tenantId);
      const repo = createKekRepository(db);
      const state = (await repo.loadState(ctx.tenantId)) ?? fail('TENANT_NOT_FOUND', 'tenant not found');
      const toVersion = String(state.current);
      // Durable before the first batch commits: a rewrap the log cannot record does not start.
      await audit.record(keyEvent(ctx, 'key.rewrap-start', { toVersion }));
      let rewrapped = 0;
      let batches = 0;
      try {
        for (;;) {
          // The keys before the rows: a row read first could be moved by a concurrent rewrap, which
          // then retires the KEK it was under, so the keys loaded after it would no longer open it.
          // Loaded first, they open every row the batch reads; a row that moved meanwhile fails its guard.
          const rewrap = await keyring.rewrapperFor(ctx.tenantId);
          const rows = await db.selectFrom('secret_versions')
            .select(['id', 'secret_id', 'environment_id', 'version', 'wrapped_dek', 'kek_version'])
            .where('tenant_id', '=', ctx.tenantId).where('kek_version', '<', state.current).where('wrapped_dek', 'is not', null)
            .limit(batchSize).execute();
          if (rows.length === 0) break;
          // Each batch commits with its own event, so the log accounts for every data key that moved.
          rewrapped += await db.transaction().execute(async (trx) => {
            let moved = 0;
            for (const row of rows) {
              const binding = { tenantId: ctx.tenantId, environmentId: row.environment_id, secretId: row.secret_id, version: row.version };
              // Selected for naming an older version, yet its key names the current one or later: the
              // row was altered. Skipping it would select it again on every pass, for ever.
              const next = rewrap(binding, row.wrapped_dek!)
                ?? fail('INTEGRITY_FAILURE', `a data key's row names key version ${row.kek_version}, but the key itself names another`);
              const res = await trx.updateTable('secret_versions').set({ wrapped_dek: next.wrappedDek, kek_version: next.kekVersion })
                .where('id', '=', row.id).where('kek_version', '=', row.kek_version).where('wrapped_dek', 'is not', null)
                .executeTakeFirst();
              moved += Number(res.numUpdatedRows);
            }
            await audit.appendInTx(trx, keyEvent(ctx, 'key.rewrap-batch', { toVersion, batch: String(++batches), rewrapped: String(moved) }));
            return moved;
          });
        }
        rewrapped += await retireBelow(ctx, state.current, (totp) => keyEvent(ctx, 'key.rewrap', {
          rewrapped: String(rewrapped + totp), totpRewrapped: String(totp), batches: String(batches), minDecryptionVersion: toVersion,
        }));
      } catch (err) {
        return recordFailure(ctx, 'key.rewrap', { toVersion, rewrapped: String(rewrapped), batches: String(batches) }, err);
      }
      return { ...(await status(ctx)), rewrapped };
    },

    /**
     * After a suspected key compromise: a new KEK version, every value and every TOTP seed resealed
     * under a fresh DEK wrapped by it (reseal-values.ts, totp-rewrap.ts), then older KEKs retired as
     * by a rewrap. A data key or KEK taken before opens nothing the tenant holds afterwards.
     */
    async reencrypt(ctx: TenantContext, opts: { batchSize?: number } = {}): Promise<KeyStatus & { resealed: number }> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      // Durable before anything changes: a re-encrypt the log cannot record does not start.
      await audit.record(keyEvent(ctx, 'key.reencrypt-start', {}));
      const progress: ResealProgress = { resealed: 0, batches: 0 };
      let toVersion: string | null = null;
      try {
        const version = await newKekVersion(ctx);
        toVersion = String(version);
        await resealValues({ db, keyring }, ctx.tenantId, {
          batchSize: opts.batchSize ?? 200,
          progress,
          onBatch: async (trx, resealed, batch) => {
            await audit.appendInTx(trx, keyEvent(ctx, 'key.reencrypt-batch', { toVersion: String(version), batch: String(batch), resealed: String(resealed) }));
          },
        });
        // The keys loaded before the rows are read, as for values; outside any transaction (SQLite's one connection).
        const totpResealed = await resealTotpSecrets(db, ctx.tenantId, await keyring.resealerFor(ctx.tenantId));
        await retireBelow(ctx, version, (totp) => keyEvent(ctx, 'key.reencrypt', {
          resealed: String(progress.resealed), totpResealed: String(totpResealed), totpRewrapped: String(totp), batches: String(progress.batches), minDecryptionVersion: String(version),
        }));
      } catch (err) {
        // The KEK version it created (if it got that far) stays current, older ones usable: a new run starts from it.
        return recordFailure(ctx, 'key.reencrypt', { resealed: String(progress.resealed), batches: String(progress.batches), ...(toVersion !== null ? { toVersion } : {}) }, err);
      }
      return { ...(await status(ctx)), resealed: progress.resealed };
    },
  };
}

export type KeyService = ReturnType<typeof createKeyService>;
