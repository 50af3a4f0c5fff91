import type { Kysely } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail, isKeyholdError, KeyholdError } from '../../errors/index.ts';
import { failureCode } from '../../storage/db-errors.ts';
import type { Clock } from '../../platform/clock.ts';
import { isoTime as iso } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { createSecretRepository } from './secret-repository.ts';
import { secretResource, type SecretService } from './secret-service.ts';
import type { Authorizer, AuthzPermit } from '../policy/authorizer.ts';
import type { SealedRowCache } from './sealed-row-cache.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { RevealedValue, VersionInfo, VersionLabel } from './types.ts';
import type { VersionBinding } from '../../crypto/envelope.ts';
import { createReadViews } from './read-views.ts';
import { withCurrentKek } from '../keys/current-kek.ts';
import { openVersion, sealedParts, type SealedVersion } from './open-version.ts';
import { createRedactor } from '../redaction/redactor.ts';
import { assertPrintable } from '../shared/typed-text.ts';

type ReadAction = 'use' | 'reveal';
export interface ReadOptions {
  version?: number;
  label?: VersionLabel;
  purpose?: 'use';
  auditContext?: Record<string, string>;
}

const READ_EVENT = { use: 'secret.use', reveal: 'secret.reveal' } as const;
const LABEL_COLUMN = { current: 'current_version', pending: 'pending_version', previous: 'previous_version' } as const;

/**
 * Secret values: immutable versions per environment, labelled current/previous, written with
 * optional check-and-set, read (decrypted) by label or number, rolled back within the window.
 * A version row and its label move commit together or not at all.
 */
export function createValueService(deps: {
  db: Kysely<Database>;
  keyring: Keyring;
  tenants: TenantService;
  secrets: SecretService;
  authz: Authorizer;
  /** Sealed rows of labelled reads; this service forgets a secret's rows whenever it changes them. */
  rows: SealedRowCache;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  clock: Clock;
  maxValueBytes: number;
  rollbackWindowMs: number;
  /** The tenant's known values masked out of text people type (a write's reason), before it is stored or audited. */
  maskText?: (tenantId: string, text: string) => Promise<string>;
}) {
  const { db, keyring, tenants, secrets, authz, rows, audit, clock, maxValueBytes, rollbackWindowMs } = deps;

  /** A write's reason as kept: the tenant's values and the value being written (not known to any redactor yet) masked out. */
  async function maskedReason(tenantId: string, reason: string | undefined, value: string): Promise<string> {
    if (!reason) return '';
    const masked = deps.maskText ? await deps.maskText(tenantId, reason) : reason;
    return createRedactor([value]).redact(masked);
  }

  /**
   * Reading a value is `use` for a machine (run time, no person sees it) and `reveal` for a person,
   * unless the in-process caller says the value never reaches the caller (`purpose: 'use'`: the proxy injects it).
   */
  const readAction = (ctx: TenantContext, purpose?: 'use') => (purpose === 'use' || ctx.actor.type === 'machine' ? 'use' as const : 'reveal' as const);
  const repo = createSecretRepository(db);
  const views = createReadViews();

  /** The plaintext at once when its data key is cached; undefined otherwise (then `decrypt`). */
  function decryptCached(binding: VersionBinding, row: SealedVersion): string | undefined {
    const { ciphertext, wrappedDek } = sealedParts(row);
    return keyring.openCached(binding, ciphertext, wrappedDek)?.toString('utf8');
  }

  /**
   * Decrypts a version. If a rewrap retired the KEK of the copy in hand (open-version.ts), the row is
   * read again and the secret's cached rows are forgotten: the cached copy would fail every read.
   */
  async function decrypt(binding: VersionBinding, name: string, row: SealedVersion): Promise<string> {
    const reload = () => {
      rows.forgetSecret(binding.tenantId, name);
      return repo.findVersion(binding.tenantId, binding.secretId, binding.environmentId, binding.version);
    };
    return (await openVersion(keyring, binding, row, reload)).toString('utf8');
  }

  /** The value leaves only once its use/reveal event is durable (fail closed). */
  function recordRead(ctx: TenantContext, action: ReadAction, secretId: string, name: string, environment: string, version: number, permit: AuthzPermit | void, extra?: Record<string, string>): Promise<void> {
    const base = auditFrom(ctx);
    // A read under an approved access request names it (escrow); the proxy adds its connector and run.
    if (permit) base.context!.accessRequestId = permit.accessRequestId;
    if (extra) Object.assign(base.context!, extra);
    return audit.record([{
      tenantId: base.tenantId, actor: base.actor, context: base.context, action: READ_EVENT[action],
      resource: { type: 'secret', id: secretId, name }, environment, secretVersion: version, outcome: 'allowed',
    }]);
  }

  /**
   * A read that was allowed but could not deliver (destroyed version, no value, a ciphertext that
   * does not open) is a `failed` event with the error's code; then the error goes to the caller.
   * SEALED is the server's state, not this read's failure (HTTP refuses it before any service runs).
   */
  async function readFailed(ctx: TenantContext, action: ReadAction, at: { secretId: string; name: string; environment: string; version: number | null }, err: unknown, extra?: Record<string, string>): Promise<never> {
    if (isKeyholdError(err) && err.code === 'SEALED') throw err;
    const base = auditFrom(ctx);
    if (extra) Object.assign(base.context!, extra);
    await audit.record([{
      ...base, action: READ_EVENT[action], resource: { type: 'secret', id: at.secretId, name: at.name }, environment: at.environment,
      secretVersion: at.version, outcome: 'failed', reason: failureCode(err),
    }]);
    throw err;
  }

  /**
   * A write or rollback that was allowed but did not happen (CAS_MISMATCH, NO_PREVIOUS_VERSION,
   * VALUE_NOT_SET, the secret deleted meanwhile) is a `failed` event with the error's code, recorded
   * after its transaction rolled back; then the error goes to the caller. A sealed server or an audit
   * log that cannot record is not this change's failure, and a failure event could not be written anyway.
   */
  async function changeFailed(ctx: TenantContext, action: 'secret.write' | 'secret.rollback', at: { secretId: string; name: string; environment: string }, err: unknown): Promise<never> {
    if (isKeyholdError(err) && err.code !== 'SEALED' && err.code !== 'AUDIT_UNAVAILABLE') {
      await audit.record([{
        ...auditFrom(ctx), action, resource: { type: 'secret', id: at.secretId, name: at.name }, environment: at.environment,
        secretVersion: null, outcome: 'failed', reason: err.code,
      }]);
    }
    throw err;
  }

  /**
   * A labelled read answered entirely from memory (environment, sealed row, remembered allow and
   * data key all cached): it awaits nothing but its audit event. Undefined when anything is
   * missing; `read` then takes the full path, which decides, loads and audits denials itself.
   */
  function readFromMemory(ctx: TenantContext, name: string, environment: string, opts: ReadOptions): Promise<RevealedValue> | undefined {
    const env = tenants.cachedEnvironment(ctx.tenantId, environment);
    const row = env && rows.get(ctx.tenantId, env.id, name, opts.label ?? 'current');
    if (!env || !row) return undefined;
    const action = opts.purpose ?? readAction(ctx);
    const view = views.of(ctx.tenantId, env.id, row);
    const remembered = authz.cachedAllow?.(ctx, action, view.resource, environment);
    if (!remembered) return undefined;
    let value: string | undefined;
    try {
      value = decryptCached(view.binding, row);
    } catch (err) {
      return readFailed(ctx, action, { secretId: row.secret_id, name, environment, version: row.version }, err, opts.auditContext);
    }
    if (value === undefined) return undefined;
    const revealed: RevealedValue = { name, environment, version: row.version, value, createdAt: view.createdAt };
    return recordRead(ctx, action, row.secret_id, name, environment, row.version, remembered.permit, opts.auditContext).then(() => revealed);
  }

  /** Every read the memory cannot answer: looks up what is missing, decides (auditing a denial), decrypts. */
  async function readFromStore(ctx: TenantContext, name: string, environment: string, opts: ReadOptions): Promise<RevealedValue> {
    const action = opts.purpose ?? readAction(ctx);
    const env = await secrets.environmentFor(ctx, environment, { auditAs: READ_EVENT[action], name });
    // A miss is audited under the HMAC of the name; a caller who may not list the secret gets the same miss.
    const lookup = { auditAs: READ_EVENT[action], environment };
    if (opts.version === undefined) {
      const label = opts.label ?? 'current';
      let row = rows.get(ctx.tenantId, env.id, name, label);
      if (!row) {
        const stamp = rows.stamp(ctx.tenantId, name);
        row = await repo.readLabelled(ctx.tenantId, name, env.id, LABEL_COLUMN[label]);
        if (row) rows.set(ctx.tenantId, env.id, name, label, row, stamp);
      }
      if (row) {
        const view = views.of(ctx.tenantId, env.id, row);
        let permit: AuthzPermit | void;
        let value: string;
        try {
          permit = await authz.require(ctx, action, view.resource, environment);
        } catch (err) {
          return secrets.refused(ctx, action, view.resource, err);
        }
        try {
          value = await decrypt(view.binding, name, row);
        } catch (err) {
          return readFailed(ctx, action, { secretId: row.secret_id, name, environment, version: row.version }, err, opts.auditContext);
        }
        await recordRead(ctx, action, row.secret_id, name, environment, row.version, permit, opts.auditContext);
        return { name, environment, version: row.version, value, createdAt: view.createdAt };
      }
      // Slow path: say precisely what is missing, but only to a caller allowed to read here.
      const secret = await secrets.load(ctx, name, lookup); // SECRET_NOT_FOUND if that is what is missing
      await secrets.authorize(ctx, action, secretResource(secret), environment);
      const missing = label === 'current'
        ? new KeyholdError('VALUE_NOT_SET', `secret "${name}" has no value in ${environment}`)
        : new KeyholdError('VERSION_NOT_FOUND', `secret "${name}" has no ${label} version in ${environment}`);
      return readFailed(ctx, action, { secretId: secret.id, name, environment, version: null }, missing, opts.auditContext);
    }
    const secret = await secrets.load(ctx, name, lookup);
    const permit = await secrets.authorize(ctx, action, secretResource(secret), environment);
    const at = { secretId: secret.id, name, environment, version: opts.version };
    const row = await repo.findVersion(ctx.tenantId, secret.id, env.id, opts.version);
    if (!row) return readFailed(ctx, action, at, new KeyholdError('VERSION_NOT_FOUND', `secret "${name}" has no version ${opts.version} in ${environment}`), opts.auditContext);
    let value: string;
    try {
      value = await decrypt({ tenantId: ctx.tenantId, environmentId: env.id, secretId: secret.id, version: row.version }, name, row);
    } catch (err) {
      return readFailed(ctx, action, at, err, opts.auditContext);
    }
    await recordRead(ctx, action, secret.id, name, environment, row.version, permit, opts.auditContext);
    return { name, environment, version: row.version, value, createdAt: iso(row.created_at)! };
  }

  return {
    /** Writes a new version and makes it current. `cas`: the expected current version (0 = none yet). */
    async write(ctx: TenantContext, name: string, environment: string, input: { value: string; cas?: number; reason?: string }) {
      // A lone surrogate would be stored as U+FFFD: the value read back would differ from the one written.
      if (!input.value.isWellFormed()) fail('VALIDATION_FAILED', 'value must be well-formed Unicode (no lone surrogates)');
      const plaintext = Buffer.from(input.value, 'utf8');
      if (plaintext.byteLength > maxValueBytes) fail('VALUE_TOO_LARGE', `values are at most ${maxValueBytes} bytes`);
      if (plaintext.byteLength === 0) fail('VALIDATION_FAILED', 'value must not be empty');
      // Shown as the last cell of a version's history line; checked before masking, as it was typed.
      if (input.reason !== undefined) assertPrintable('reason', input.reason);
      // The environment first: resolved after the secret, its miss would confirm the name to anyone.
      const env = await secrets.environmentFor(ctx, environment, { auditAs: 'secret.write', name });
      const secret = await secrets.load(ctx, name, { auditAs: 'secret.write', environment });
      await secrets.authorize(ctx, 'write', secretResource(secret), environment);
      const reason = await maskedReason(ctx.tenantId, input.reason, input.value);
      const now = clock.now();
      const result = await withCurrentKek(keyring, ctx.tenantId, ({ seal, assertCurrent }) => db.transaction().execute(async (trx) => {
        await assertCurrent(trx);
        const r = createSecretRepository(trx);
        // Deleted or destroyed since it was loaded above: a version must not land in it.
        if (!(await r.lockLiveSecret(ctx.tenantId, secret.id))) fail('SECRET_NOT_FOUND', `secret "${name}" does not exist`);
        await r.ensureState(ctx.tenantId, secret.id, env.id, now);
        const moved = await r.advanceCurrent(secret.id, env.id, input.cas, now);
        if (!moved) fail('CAS_MISMATCH', `the current version of "${name}" in ${environment} is not ${input.cas}`);
        const sealed = seal({ tenantId: ctx.tenantId, environmentId: env.id, secretId: secret.id, version: moved.version }, plaintext);
        await r.insertVersion({
          id: newId(), tenant_id: ctx.tenantId, secret_id: secret.id, environment_id: env.id, version: moved.version,
          ciphertext: sealed.ciphertext, wrapped_dek: sealed.wrappedDek, kek_version: sealed.kekVersion,
          created_at: now, created_by: ctx.actor.id, reason,
        });
        if (moved.superseded !== null) await r.setSuperseded(secret.id, env.id, moved.superseded, now);
        const base = auditFrom(ctx);
        await audit.appendInTx(trx, [{
          ...base, action: 'secret.write', resource: { type: 'secret', id: secret.id, name },
          environment, secretVersion: moved.version, outcome: 'allowed',
          ...(reason ? { context: { ...base.context, reason } } : {}),
        }]);
        return moved;
      })).catch((err: unknown) => changeFailed(ctx, 'secret.write', { secretId: secret.id, name, environment }, err))
        .finally(() => plaintext.fill(0));
      rows.forgetSecret(ctx.tenantId, name);
      return { name, environment, version: result.version, previousVersion: result.superseded };
    },

    /**
     * Decrypts the value at a label (default current) or a version number (never both). `purpose: 'use'` is for
     * values that go on without anyone seeing them (the credential proxy injects them): it needs
     * `use`, even for a person; `auditContext` adds fields (connector, run, step) to the use event.
     */
    read(ctx: TenantContext, name: string, environment: string, opts: ReadOptions = {}): Promise<RevealedValue> {
      try {
        // Answering with either one would hand back a value the caller did not ask for.
        if (opts.version !== undefined && opts.label !== undefined) fail('VALIDATION_FAILED', 'give a version or a label, not both');
        return (opts.version === undefined ? readFromMemory(ctx, name, environment, opts) : undefined) ?? readFromStore(ctx, name, environment, opts);
      } catch (err) {
        return Promise.reject(err);
      }
    },

    async history(ctx: TenantContext, name: string, environment: string): Promise<VersionInfo[]> {
      const env = await secrets.environmentFor(ctx, environment, { auditAs: 'secret.history', name });
      const secret = await secrets.load(ctx, name, { auditAs: 'secret.history', environment });
      await secrets.authorize(ctx, 'list', secretResource(secret), environment);
      const state = await repo.findState(secret.id, env.id);
      const rows = await repo.listVersions(ctx.tenantId, secret.id, env.id);
      return rows.map((r) => ({
        version: r.version,
        labels: ([
          state?.current_version === r.version ? 'current' : null,
          state?.pending_version === r.version ? 'pending' : null,
          state?.previous_version === r.version ? 'previous' : null,
        ].filter(Boolean) as VersionLabel[]),
        createdAt: iso(r.created_at)!,
        createdBy: r.created_by,
        reason: r.reason,
        supersededAt: iso(r.superseded_at),
        destroyedAt: iso(r.destroyed_at),
      }));
    },

    /** Makes `previous` current again (the old current becomes previous), within the rollback window. */
    async rollback(ctx: TenantContext, name: string, environment: string, opts: { cas?: number } = {}) {
      const env = await secrets.environmentFor(ctx, environment, { auditAs: 'secret.rollback', name });
      const secret = await secrets.load(ctx, name, { auditAs: 'secret.rollback', environment });
      await secrets.authorize(ctx, 'rotate', secretResource(secret), environment);
      const now = clock.now();
      const result = await db.transaction().execute(async (trx) => {
        const r = createSecretRepository(trx);
        // Deleted or destroyed since it was loaded above: a deleted secret's labels stay as they were deleted.
        if (!(await r.lockLiveSecret(ctx.tenantId, secret.id))) fail('SECRET_NOT_FOUND', `secret "${name}" does not exist`);
        const state = await r.findState(secret.id, env.id);
        if (!state || state.current_version === null) fail('VALUE_NOT_SET', `secret "${name}" has no value in ${environment}`);
        if (opts.cas !== undefined && state.current_version !== opts.cas) {
          fail('CAS_MISMATCH', `the current version of "${name}" in ${environment} is not ${opts.cas}`);
        }
        const previous = state.previous_version === null ? undefined : await r.findVersion(ctx.tenantId, secret.id, env.id, state.previous_version);
        if (!previous || previous.destroyed_at !== null || (previous.superseded_at ?? now) < now - rollbackWindowMs) {
          fail('NO_PREVIOUS_VERSION', `secret "${name}" has no previous version within the rollback window in ${environment}`);
        }
        const swapped = await r.swapCurrentWithPrevious(secret.id, env.id, state.current_version, previous.version, now);
        if (!swapped) fail('CAS_MISMATCH', `secret "${name}" changed during the rollback; try again`);
        await r.setSuperseded(secret.id, env.id, previous.version, null);
        await r.setSuperseded(secret.id, env.id, state.current_version, now);
        await audit.appendInTx(trx, [{
          ...auditFrom(ctx), action: 'secret.rollback', resource: { type: 'secret', id: secret.id, name },
          environment, secretVersion: previous.version, outcome: 'allowed',
        }]);
        return { name, environment, version: previous.version, previousVersion: state.current_version };
      }).catch((err: unknown) => changeFailed(ctx, 'secret.rollback', { secretId: secret.id, name, environment }, err));
      rows.forgetSecret(ctx.tenantId, name);
      return result;
    },
  };
}

export type ValueService = ReturnType<typeof createValueService>;
