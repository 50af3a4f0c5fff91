import type { Kysely, Transaction } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { TenantContext } from '../shared/context.ts';
import type { SealedRowCache } from './sealed-row-cache.ts';
import { createSecretRepository } from './secret-repository.ts';
import { withCurrentKek } from '../keys/current-kek.ts';
import { openVersion } from './open-version.ts';

/** The secret and environment a pending version belongs to (already resolved and authorized by the caller). */
export interface PendingTarget {
  secretId: string;
  name: string;
  environmentId: string;
  environment: string;
}

/** Runs inside the same transaction as the label change (the rotation records its step there). */
export type InTx = (trx: Transaction<Database>) => Promise<void>;

/**
 * The `pending` label (SPEC §1, §6): a version written without becoming current, then promoted
 * (pending → current, old current → previous) or discarded (crypto-shredded). Each change moves
 * the label pointer with one guarded UPDATE, inserts or shreds the version, appends its audit
 * event and runs the caller's own bookkeeping in one transaction, so a crash leaves either the
 * whole change or none of it. Callers authorize first (the rotation service requires `rotate`).
 */
export function createPendingVersions(deps: {
  db: Kysely<Database>;
  keyring: Pick<Keyring, 'sealerFor' | 'openValue' | 'forgetDeks' | 'invalidate'>;
  rows: Pick<SealedRowCache, 'forgetSecret'>;
  audit: Pick<AuditLog, 'appendInTx'>;
  clock: Clock;
  maxValueBytes: number;
}) {
  const { db, keyring, rows, audit, clock, maxValueBytes } = deps;
  const event = (ctx: TenantContext, action: string, t: PendingTarget, version: number, context: Record<string, string> = {}) => {
    const base = auditFrom(ctx);
    return [{
      ...base, action, resource: { type: 'secret', id: t.secretId, name: t.name }, environment: t.environment,
      secretVersion: version, outcome: 'allowed' as const, context: { ...base.context, ...context },
    }];
  };

  return {
    /** Writes `value` as the pending version. PENDING_EXISTS if one is already pending. */
    async write(ctx: TenantContext, t: PendingTarget, value: string, opts: { reason?: string; context?: Record<string, string>; inTx?: InTx } = {}) {
      if (!value.isWellFormed()) fail('VALIDATION_FAILED', 'value must be well-formed Unicode (no lone surrogates)');
      const plaintext = Buffer.from(value, 'utf8');
      try {
        if (plaintext.byteLength > maxValueBytes) fail('VALUE_TOO_LARGE', `values are at most ${maxValueBytes} bytes`);
        if (plaintext.byteLength === 0) fail('VALIDATION_FAILED', 'value must not be empty');
        const now = clock.now();
        const result = await withCurrentKek(keyring, ctx.tenantId, ({ seal, assertCurrent }) => db.transaction().execute(async (trx) => {
          await assertCurrent(trx);
          const r = createSecretRepository(trx);
          if (!(await r.lockLiveSecret(ctx.tenantId, t.secretId))) fail('SECRET_NOT_FOUND', `secret "${t.name}" does not exist`);
          await r.ensureState(ctx.tenantId, t.secretId, t.environmentId, now);
          const row = await trx.updateTable('secret_states')
            .set((eb) => ({ latest_version: eb('latest_version', '+', 1), pending_version: eb('latest_version', '+', 1), updated_at: now }))
            .where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId).where('pending_version', 'is', null)
            .returning(['pending_version', 'current_version']).executeTakeFirst();
          if (!row) fail('PENDING_EXISTS', `secret "${t.name}" already has a pending version in ${t.environment}`);
          const version = row.pending_version!;
          const sealed = seal({ tenantId: ctx.tenantId, environmentId: t.environmentId, secretId: t.secretId, version }, plaintext);
          await r.insertVersion({
            id: newId(), tenant_id: ctx.tenantId, secret_id: t.secretId, environment_id: t.environmentId, version,
            ciphertext: sealed.ciphertext, wrapped_dek: sealed.wrappedDek, kek_version: sealed.kekVersion,
            created_at: now, created_by: ctx.actor.id, reason: opts.reason ?? '',
          });
          await audit.appendInTx(trx, event(ctx, 'secret.pending.write', t, version, opts.context));
          await opts.inTx?.(trx);
          return { version, current: row.current_version };
        }));
        rows.forgetSecret(ctx.tenantId, t.name);
        return result;
      } finally {
        plaintext.fill(0);
      }
    },

    /** Decrypts one version for the rotation's own use (the rotator restores or tests with it). */
    async open(ctx: TenantContext, t: PendingTarget, version: number): Promise<string> {
      const find = () => createSecretRepository(db).findVersion(ctx.tenantId, t.secretId, t.environmentId, version);
      const row = (await find()) ?? fail('VERSION_NOT_FOUND', `secret "${t.name}" has no version ${version} in ${t.environment}`);
      const binding = { tenantId: ctx.tenantId, environmentId: t.environmentId, secretId: t.secretId, version };
      // Read again if a rewrap retired its KEK meanwhile (open-version.ts).
      return (await openVersion(keyring, binding, row, find)).toString('utf8');
    },

    /** The label pointers now (null when the secret has never had a value here). */
    async labels(t: PendingTarget) {
      const s = await createSecretRepository(db).findState(t.secretId, t.environmentId);
      return s ? { current: s.current_version, pending: s.pending_version, previous: s.previous_version } : { current: null, pending: null, previous: null };
    },

    /**
     * pending → current, old current → previous, in one guarded UPDATE: it matches only while
     * `version` is still pending and `expectedCurrent` still current (a write that landed meanwhile
     * makes it match nothing). Returns false then, and nothing changed.
     */
    async promote(ctx: TenantContext, t: PendingTarget, version: number, expectedCurrent: number | null, opts: { context?: Record<string, string>; inTx?: InTx } = {}): Promise<boolean> {
      const now = clock.now();
      const done = await db.transaction().execute(async (trx) => {
        let q = trx.updateTable('secret_states')
          .set((eb) => ({ previous_version: eb.ref('current_version'), current_version: version, pending_version: null, updated_at: now }))
          .where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId).where('pending_version', '=', version);
        q = expectedCurrent === null ? q.where('current_version', 'is', null) : q.where('current_version', '=', expectedCurrent);
        const res = await q.executeTakeFirst();
        if (Number(res.numUpdatedRows) !== 1) return false;
        const r = createSecretRepository(trx);
        if (expectedCurrent !== null) await r.setSuperseded(t.secretId, t.environmentId, expectedCurrent, now);
        await audit.appendInTx(trx, event(ctx, 'secret.promote', t, version, opts.context));
        await opts.inTx?.(trx);
        return true;
      });
      rows.forgetSecret(ctx.tenantId, t.name);
      return done;
    },

    /**
     * Drops the pending label (if it is still `version`) and crypto-shreds the version: a value that
     * never became current must not stay decryptable. Idempotent, so recovery can repeat it.
     */
    async discard(ctx: TenantContext, t: PendingTarget, version: number, opts: { context?: Record<string, string>; inTx?: InTx } = {}): Promise<void> {
      const now = clock.now();
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('secret_states').set({ pending_version: null, updated_at: now })
          .where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId).where('pending_version', '=', version).execute();
        const shred = await trx.updateTable('secret_versions').set({ wrapped_dek: null, ciphertext: null, destroyed_at: now })
          .where('tenant_id', '=', ctx.tenantId).where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId)
          .where('version', '=', version).where('destroyed_at', 'is', null)
          // Never shred a version that became current or previous (a promote that did commit).
          .where((eb) => eb.not(eb.exists(eb.selectFrom('secret_states').select('secret_id')
            .where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId)
            .where((w) => w.or([w('current_version', '=', version), w('previous_version', '=', version)])))))
          .executeTakeFirst();
        if (Number(shred.numUpdatedRows) > 0) await audit.appendInTx(trx, event(ctx, 'secret.pending.discard', t, version, opts.context));
        await opts.inTx?.(trx);
      });
      keyring.forgetDeks(ctx.tenantId);
      rows.forgetSecret(ctx.tenantId, t.name);
    },
  };
}

export type PendingVersions = ReturnType<typeof createPendingVersions>;
