import type { Kysely } from 'kysely';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { isoTime as iso } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { Database, SecretsTable } from '../../storage/schema.ts';
import type { TenantContext } from '../shared/context.ts';
import { assertSecretName } from '../shared/names.ts';
import { assertPrintable, visibleLength } from '../shared/typed-text.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import type { Authorizer, AuthzPermit, SecretResource } from '../policy/authorizer.ts';
import type { Action } from '../policy/actions.ts';
import type { IdentifierHasher } from '../audit/identifiers.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import type { SealedRowCache } from './sealed-row-cache.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import { createSecretRepository, type SecretRepository } from './secret-repository.ts';
import type { ListCursors } from './list-cursor.ts';
import { widenedFor } from './metadata-guard.ts';
import { CLASSIFICATIONS, type CreateSecretInput, type SecretDetail, type SecretMeta, type UpdateSecretInput, type Classification } from './types.ts';

/** Rows one listing request reads at most past secrets its caller may not list before it answers a partial page. */
const MAX_SCANNED = 2000;
/** One answer for a secret that does not exist and one the caller may not know of. */
const notFound = (name: string): never => fail('SECRET_NOT_FOUND', `secret "${name}" does not exist`);

export function toSecretMeta(row: SecretsTable): SecretMeta {
  return {
    id: row.id,
    name: row.name,
    label: row.label,
    owner: row.owner,
    purpose: row.purpose,
    classification: row.classification as Classification,
    tags: JSON.parse(row.tags) as string[],
    expiresAt: iso(row.expires_at),
    createdAt: iso(row.created_at)!,
    createdBy: row.created_by,
    updatedAt: iso(row.updated_at)!,
    deletedAt: iso(row.deleted_at),
    revision: row.revision,
  };
}

/**
 * A tag as policies compare it: one that prints like another must be that other. Composed (NFC), and
 * refused when it holds an invisible character (zero-width space, word joiner, soft hyphen, BOM) or
 * surrounding spaces: `pci\u200b` reads as `pci` in every listing but would escape a rule on `pci`.
 */
function tagOf(tag: string): string {
  const composed = tag.normalize('NFC');
  if (/\p{Default_Ignorable_Code_Point}/u.test(composed) || composed.trim() !== composed || composed.length === 0) {
    fail('VALIDATION_FAILED', 'a tag holds an invisible character or surrounding spaces: it would print like another tag');
  }
  return composed;
}

/**
 * Metadata people read as one line in listings and in `secrets describe`: no character that could redraw
 * them, an owner and label that show something (the owner is required: an invisible one is none),
 * owner and tags composed (NFC) so text that prints alike compares alike, in policies too.
 */
function checkedMeta<T extends UpdateSecretInput>(input: T): T {
  for (const field of ['label', 'owner', 'purpose'] as const) if (input[field] !== undefined) assertPrintable(field, input[field]);
  for (const tag of input.tags ?? []) assertPrintable('a tag', tag);
  for (const field of ['label', 'owner'] as const) {
    if (input[field] !== undefined && visibleLength(input[field]) === 0) fail('VALIDATION_FAILED', `${field} shows nothing: give it visible characters`);
  }
  return {
    ...input,
    ...(input.owner !== undefined ? { owner: input.owner.normalize('NFC') } : {}),
    ...(input.tags !== undefined ? { tags: input.tags.map(tagOf) } : {}),
  };
}

function parseExpiry(value: string | null | undefined): number | null {
  if (value === undefined || value === null) return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) fail('VALIDATION_FAILED', 'expiresAt must be an ISO 8601 date-time');
  return ms;
}

/**
 * Secret inventory and lifecycle: create, describe, list, update metadata, soft delete, restore,
 * destroy. Values live in the value service; this one never touches plaintext.
 */
/** The policy view of a secret row: metadata only. */
export function secretResource(row: Pick<SecretsTable, 'id' | 'name' | 'classification' | 'owner' | 'tags'>): SecretResource {
  return { type: 'secret', id: row.id, name: row.name, classification: row.classification, owner: row.owner, tags: JSON.parse(row.tags) as string[] };
}

export function createSecretService(deps: {
  db: Kysely<Database>; tenants: TenantService; authz: Authorizer; clock: Clock; maxNameLength: number;
  /** Destroyed versions' data keys must not outlive them in the keyring's cache. */
  keyring: Pick<Keyring, 'forgetDeks'>;
  /** Cached sealed rows of a secret are forgotten whenever its metadata, labels or existence change. */
  rows: Pick<SealedRowCache, 'forgetSecret'>;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  /** A requested name that does not exist is recorded as its keyed HMAC: it may be a pasted value. */
  identifiers: Pick<IdentifierHasher, 'hash'>;
  /** Listing pages that end on a secret the caller may not list resume from a sealed cursor. */
  cursors: ListCursors;
}) {
  const { db, tenants, authz, clock, maxNameLength, keyring, rows, audit, identifiers, cursors } = deps;
  const repo = createSecretRepository(db);

  /** Runs a change and its audit event in one transaction: both commit or neither. */
  function audited<T>(ctx: TenantContext, action: string, secret: { id: string; name: string }, change: (r: SecretRepository) => Promise<T>, extra: { environment?: string; context?: Record<string, string> } = {}): Promise<T> {
    return db.transaction().execute(async (trx) => {
      const result = await change(createSecretRepository(trx));
      const base = auditFrom(ctx);
      await audit.appendInTx(trx, [{
        ...base, action, resource: { type: 'secret', id: secret.id, name: secret.name }, outcome: 'allowed',
        environment: extra.environment ?? null, context: { ...base.context, ...extra.context },
      }]);
      return result;
    });
  }

  /**
   * The secret row, or SECRET_NOT_FOUND. With `auditAs` (the action the caller attempted), a miss is
   * a failed event whose resource name is the HMAC of the requested name, never the name itself.
   */
  async function load(ctx: TenantContext, name: string, opts: { allowDeleted?: boolean; auditAs?: string; environment?: string } = {}) {
    assertSecretName(name, maxNameLength);
    const row = await repo.findSecret(ctx.tenantId, name);
    if (row && (row.deleted_at === null || opts.allowDeleted)) return row;
    if (opts.auditAs) {
      const base = auditFrom(ctx);
      await audit.record([{
        ...base, action: opts.auditAs, resource: { type: 'secret', id: null, name: identifiers.hash(name) },
        environment: opts.environment ?? null, outcome: 'failed', reason: 'SECRET_NOT_FOUND',
      }]);
    }
    return notFound(name);
  }

  /**
   * `authz.require` that does not confirm a name to a caller with no rights on it: a FORBIDDEN for
   * someone who may not even list the secret is answered exactly as a miss (the denial is still
   * recorded by the authorizer), so probing names tells nothing. Allowed calls pay nothing extra.
   */
  async function authorize(ctx: TenantContext, action: Action, resource: SecretResource, environment?: string): Promise<AuthzPermit | void> {
    try {
      return await authz.require(ctx, action, resource, environment);
    } catch (err) {
      return refused(ctx, action, resource, err);
    }
  }

  /** What a refusal of `authz.require` becomes (see `authorize`), for callers that await `require` themselves. */
  async function refused(ctx: TenantContext, action: Action, resource: SecretResource, err: unknown): Promise<never> {
    if (isKeyholdError(err) && err.code === 'FORBIDDEN' && (action === 'list' || !(await authz.allowed(ctx, 'list', resource)))) notFound(resource.name);
    throw err;
  }

  /**
   * The environment a value operation names, or ENVIRONMENT_NOT_FOUND, audited as a failed `auditAs`
   * event. Both names are recorded as HMACs: the secret's is not looked up (its existence must not be
   * confirmed by a miss elsewhere), and a name that is no environment may be anything a caller typed.
   */
  async function environmentFor(ctx: TenantContext, environment: string, attempt: { auditAs: string; name: string }) {
    try {
      return await tenants.environment(ctx.tenantId, environment);
    } catch (err) {
      if (isKeyholdError(err) && err.code === 'ENVIRONMENT_NOT_FOUND') {
        await audit.record([{
          ...auditFrom(ctx), action: attempt.auditAs, resource: { type: 'secret', id: null, name: identifiers.hash(attempt.name) },
          environment: identifiers.hash(environment), outcome: 'failed', reason: 'ENVIRONMENT_NOT_FOUND',
        }]);
      }
      throw err;
    }
  }

  return {
    load,
    environmentFor,
    authorize,
    refused,

    async create(ctx: TenantContext, raw: CreateSecretInput): Promise<SecretMeta> {
      assertSecretName(raw.name, maxNameLength);
      const input = checkedMeta(raw);
      const now = clock.now();
      const row: SecretsTable = {
        id: newId(),
        tenant_id: ctx.tenantId,
        name: input.name,
        label: input.label ?? input.name,
        owner: input.owner,
        purpose: input.purpose ?? '',
        classification: input.classification ?? 'internal',
        tags: JSON.stringify([...new Set(input.tags ?? [])]),
        expires_at: parseExpiry(input.expiresAt),
        created_at: now,
        created_by: ctx.actor.id,
        updated_at: now,
        deleted_at: null,
        revision: 1,
      };
      await authz.require(ctx, 'write', secretResource(row));
      try {
        await audited(ctx, 'secret.create', row, (r) => r.insertSecret(row), { context: { owner: row.owner, classification: row.classification } });
      } catch (err) {
        if (isUniqueViolation(err)) fail('SECRET_EXISTS', `secret "${input.name}" already exists (it may be soft-deleted)`);
        throw err;
      }
      return toSecretMeta(row);
    },

    async describe(ctx: TenantContext, name: string): Promise<SecretDetail> {
      const row = await load(ctx, name, { auditAs: 'secret.describe' });
      const resource = secretResource(row);
      await authorize(ctx, 'list', resource);
      // Metadata is not per environment, but versions are: an environment the caller may not list
      // in (a grant narrowed elsewhere, a credential bound elsewhere) is left out, as its history is refused.
      const states: Awaited<ReturnType<typeof repo.listStates>> = [];
      for (const s of await repo.listStates(ctx.tenantId, row.id)) if (await authz.allowed(ctx, 'list', resource, s.environment)) states.push(s);
      return {
        ...toSecretMeta(row),
        environments: states.map((s) => ({
          environment: s.environment,
          currentVersion: s.current_version,
          pendingVersion: s.pending_version,
          previousVersion: s.previous_version,
          updatedAt: iso(s.updated_at)!,
        })),
      };
    },

    /**
     * A page of the secrets the caller may list, in name order. The scan goes on past secrets the
     * caller may not list until the page is full; `next` is then the last listed name. A scan that
     * stops on a hidden secret (after MAX_SCANNED rows) answers a sealed cursor: a page cursor must
     * never name a secret its caller may not see.
     */
    async list(ctx: TenantContext, opts: { includeDeleted?: boolean; after?: string; prefix?: string; limit?: number } = {}) {
      const limit = Math.min(Math.max(opts.limit ?? 100, 1), 1000);
      const batch = Math.max(limit, 100);
      let after = opts.after ? cursors.open(ctx.tenantId, opts.after) : undefined;
      const visible: SecretsTable[] = [];
      for (let scanned = 0; ;) {
        const rows = await repo.listSecrets(ctx.tenantId, {
          includeDeleted: opts.includeDeleted ?? false,
          limit: batch,
          ...(after ? { after } : {}),
          ...(opts.prefix ? { prefix: opts.prefix } : {}),
        });
        for (const row of rows) {
          scanned++;
          after = row.name;
          if (!(await authz.allowed(ctx, 'list', secretResource(row)))) continue;
          visible.push(row);
          if (visible.length === limit) return { items: visible.map(toSecretMeta), next: row.name };
        }
        if (rows.length < batch) return { items: visible.map(toSecretMeta), next: null };
        if (scanned >= MAX_SCANNED) return { items: visible.map(toSecretMeta), next: cursors.seal(ctx.tenantId, after!) };
      }
    },

    async update(ctx: TenantContext, name: string, raw: UpdateSecretInput): Promise<SecretMeta> {
      const patch = checkedMeta(raw);
      const row = await load(ctx, name, { auditAs: 'secret.update' });
      await authorize(ctx, 'write', secretResource(row));
      // Reclassifying is judged on the new metadata too, so nobody can move a secret out of their own reach.
      if (patch.classification !== undefined) await authz.require(ctx, 'write', secretResource({ ...row, classification: patch.classification }));
      // Classification is what approval rules and tenant policies key on: lowering it takes a secret out
      // of their protection, so it needs the tenant's administrator, not just a writer of the secret.
      const lowered = patch.classification !== undefined && CLASSIFICATIONS.indexOf(patch.classification) < CLASSIFICATIONS.indexOf(row.classification as Classification);
      // Owner and tags are keyed on by policies too: a change that would open the secret to its own author needs the admin as well.
      const keyed = patch.owner !== undefined || patch.tags !== undefined || patch.classification !== undefined;
      const after = secretResource({ ...row, owner: patch.owner ?? row.owner, classification: patch.classification ?? row.classification, tags: patch.tags ? JSON.stringify([...new Set(patch.tags)]) : row.tags });
      if (lowered || (keyed && (await widenedFor(ctx, authz, secretResource(row), after, (await tenants.listEnvironments(ctx.tenantId)).map((e) => e.name), clock.now())))) {
        await authz.require(ctx, 'admin', { type: 'tenant' });
      }
      // Those checks judged this very row: a classification is written only onto it, never onto a
      // newer one (a concurrent raise would otherwise be lowered by a caller who needed admin to lower it).
      const expectedRevision = patch.classification !== undefined ? row.revision : patch.revision;
      if (patch.revision !== undefined && patch.revision !== expectedRevision) fail('CAS_MISMATCH', `secret "${name}" was changed by someone else (revision is no longer ${patch.revision})`);
      const changes: Partial<SecretsTable> = { updated_at: clock.now() };
      if (patch.label !== undefined) changes.label = patch.label;
      if (patch.owner !== undefined) changes.owner = patch.owner;
      if (patch.purpose !== undefined) changes.purpose = patch.purpose;
      if (patch.classification !== undefined) changes.classification = patch.classification;
      if (patch.tags !== undefined) changes.tags = JSON.stringify([...new Set(patch.tags)]);
      if (patch.expiresAt !== undefined) changes.expires_at = parseExpiry(patch.expiresAt);
      await audited(ctx, 'secret.update', row, async (r) => {
        const updated = await r.updateSecret(ctx.tenantId, row.id, changes, expectedRevision);
        // Deleted (or destroyed) since it was loaded: a deleted secret is restored as it was deleted.
        if (!updated && (await r.findSecret(ctx.tenantId, name))?.deleted_at !== null) notFound(name);
        if (!updated) fail('CAS_MISMATCH', `secret "${name}" was changed by someone else (revision is no longer ${expectedRevision}); read it and try again`);
        return updated;
      }, { context: { fields: Object.keys(changes).filter((k) => k !== 'updated_at').join(',') } });
      rows.forgetSecret(ctx.tenantId, name);
      return toSecretMeta((await repo.findSecret(ctx.tenantId, name)) ?? fail('SECRET_NOT_FOUND', `secret "${name}" not found`));
    },

    /** Soft delete: the secret stops resolving but keeps every version until restored or destroyed. */
    async remove(ctx: TenantContext, name: string): Promise<SecretMeta> {
      const row = await load(ctx, name, { auditAs: 'secret.delete' });
      await authorize(ctx, 'delete', secretResource(row));
      // Guarded: another delete or a destroy may have won since the row was read; then nothing is written or recorded.
      await audited(ctx, 'secret.delete', row, async (r) => {
        if (!(await r.softDeleteSecret(ctx.tenantId, row.id, clock.now()))) notFound(name);
      });
      rows.forgetSecret(ctx.tenantId, name);
      return toSecretMeta((await repo.findSecret(ctx.tenantId, name)) ?? fail('SECRET_NOT_FOUND', `secret "${name}" not found`));
    },

    async restore(ctx: TenantContext, name: string): Promise<SecretMeta> {
      const row = await load(ctx, name, { allowDeleted: true, auditAs: 'secret.restore' });
      await authorize(ctx, 'delete', secretResource(row));
      if (row.deleted_at === null) return toSecretMeta(row);
      // Guarded: another restore or a destroy may have won since the row was read. Then nothing
      // changed here and no event is written (the transaction rolls back); the answer is what is there now.
      const lost = new Error('restored or destroyed meanwhile');
      try {
        await audited(ctx, 'secret.restore', row, async (r) => {
          if (!(await r.restoreSecret(ctx.tenantId, row.id, clock.now()))) throw lost;
        });
      } catch (err) {
        if (err !== lost) throw err;
      }
      rows.forgetSecret(ctx.tenantId, name);
      const now = await repo.findSecret(ctx.tenantId, name);
      if (!now || now.deleted_at !== null || now.id !== row.id) fail('SECRET_NOT_FOUND', `secret "${name}" not found`);
      return toSecretMeta(now);
    },

    /**
     * Destroys for good. With an environment and versions: crypto-shreds those versions (never the
     * current one). Without: the secret must be soft-deleted first, and everything goes, name included.
     */
    async destroy(ctx: TenantContext, name: string, opts: { environment?: string; versions?: number[] } = {}) {
      // An environment names versions to shred: without them the call must not widen into destroying every environment's.
      if (opts.environment !== undefined && !opts.versions?.length) fail('VALIDATION_FAILED', 'destroying versions in an environment needs the versions; to destroy the whole secret, name no environment');
      const row = await load(ctx, name, { allowDeleted: true, auditAs: 'secret.destroy', ...(opts.environment ? { environment: opts.environment } : {}) });
      await authorize(ctx, 'delete', secretResource(row), opts.versions?.length ? opts.environment : undefined);
      const now = clock.now();
      if (opts.versions && opts.versions.length > 0) {
        if (!opts.environment) fail('VALIDATION_FAILED', 'destroying versions needs an environment');
        const env = await tenants.environment(ctx.tenantId, opts.environment);
        const result = await audited(ctx, 'secret.destroy-versions', row, async (r) => {
          // Locked: a rollback or promotion committing meanwhile would otherwise make a version current after this check.
          const state = await r.lockState(row.id, env.id);
          const ids: string[] = [];
          for (const v of opts.versions!) {
            if (state?.current_version === v) fail('VALIDATION_FAILED', `version ${v} is current; write a new value or roll back first`);
            // A rotation stages it, may have set it at the source, and needs it to undo that there: it ends with the rotation.
            if (state?.pending_version === v) fail('VALIDATION_FAILED', `version ${v} is pending in a rotation; it is discarded (shredded) or promoted when the rotation ends`);
            const version = await r.findVersion(ctx.tenantId, row.id, env.id, v);
            if (!version) fail('VERSION_NOT_FOUND', `version ${v} does not exist`);
            ids.push(version.id);
            await r.clearDestroyedLabels(row.id, env.id, v);
          }
          return { destroyed: await r.destroyVersions(ctx.tenantId, row.id, ids, now) };
        }, { environment: opts.environment, context: { versions: opts.versions.join(',') } });
        keyring.forgetDeks(ctx.tenantId);
        rows.forgetSecret(ctx.tenantId, name);
        return result;
      }
      if (row.deleted_at === null) fail('SECRET_NOT_DELETED', `delete secret "${name}" before destroying it`);
      await audited(ctx, 'secret.destroy', row, async (r) => {
        // Checked again under the row's lock: a restore that committed since the read above wins.
        if (!(await r.lockDeletedSecret(ctx.tenantId, row.id))) fail('SECRET_NOT_DELETED', `secret "${name}" was restored meanwhile; delete it again before destroying it`);
        await r.deleteSecret(ctx.tenantId, row.id);
      });
      keyring.forgetDeks(ctx.tenantId);
      rows.forgetSecret(ctx.tenantId, name);
      return { destroyed: 'all' as const };
    },
  };
}

export type SecretService = ReturnType<typeof createSecretService>;
