import type { Kysely } from 'kysely';
import { Type, type Static } from 'typebox';
import { Value } from 'typebox/value';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { commitStaged, type StagedWrite } from '../audit/staged-write.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import type { AutomationService, IncomingConnector, SavedAutomation } from './automation-service.ts';
import { DefinitionSchema, EXPORT_FORMAT, EXPORT_VERSION, type AutomationDefinition } from './types.ts';
import { connectorsReferenced } from './validate.ts';

/** A connector as exported: its configuration and slot references, never a value. */
export const ExportedConnectorSchema = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 128 }),
  type: Type.String({ minLength: 1, maxLength: 32 }),
  owner: Type.String({ minLength: 1, maxLength: 200 }),
  settings: Type.Record(Type.String({ maxLength: 128 }), Type.Unknown()),
  slots: Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 128 })),
}, { additionalProperties: false });

export const ExportDocumentSchema = Type.Object({
  format: Type.Literal(EXPORT_FORMAT),
  version: Type.Literal(EXPORT_VERSION),
  exportedAt: Type.String({ maxLength: 64 }),
  /** The environment the connectors were exported from (null when none were). */
  environment: Type.Union([Type.String({ maxLength: 63 }), Type.Null()]),
  automations: Type.Array(DefinitionSchema, { maxItems: 500 }),
  connectors: Type.Array(ExportedConnectorSchema, { maxItems: 500 }),
}, { additionalProperties: false });

export type ExportDocument = Static<typeof ExportDocumentSchema>;
export type ExportedConnector = Static<typeof ExportedConnectorSchema>;

/** What export/import needs of connectors: read them out of one environment, write them into another. */
export interface ConnectorExchange {
  exportFrom(ctx: TenantContext, environment: string, names: string[]): Promise<ExportedConnector[]>;
  /** Every check of writing `connectors` into `environment`, then those writes, staged for the import's one transaction. */
  prepareImport(ctx: TenantContext, environment: string, connectors: ExportedConnector[], opts: { overwrite: boolean }): Promise<Array<StagedWrite<unknown>>>;
}

/**
 * Versioned JSON exports of automations (and, with an environment, the connectors they use) that
 * carry references only. Importing into another tenant or environment resolves the same names
 * there: every definition is checked against the target exactly as a save would be.
 */
/** What an import wrote; `webhooks`: the tokens of the webhook triggers it saved, shown this once. */
export interface ImportResult {
  automations: string[];
  connectors: string[];
  webhooks: SavedAutomation[];
}

const isSaved = (r: unknown): r is SavedAutomation => typeof r === 'object' && r !== null && 'automation' in r && 'webhookToken' in r;

export function createAutomationExchange(deps: {
  automations: Pick<AutomationService, 'list' | 'prepareCreate' | 'prepareUpdate'>;
  connectors: ConnectorExchange;
  authz: Pick<Authorizer, 'require'>;
  clock: Clock;
  db: Kysely<Database>;
  audit: Pick<AuditLog, 'appendInTx'>;
}) {
  const { automations, connectors, authz, clock, db, audit } = deps;
  return {
    /** Takes definitions out of the tenant: the `export` permission (SPEC §3), beside seeing each definition and connector. */
    async export(ctx: TenantContext, opts: { names?: string[]; environment?: string }): Promise<ExportDocument> {
      await authz.require(ctx, 'export', { type: 'tenant' });
      const all = await automations.list(ctx);
      const chosen = opts.names?.length ? opts.names.map((n) => all.find((a) => a.definition.name === n) ?? fail('AUTOMATION_NOT_FOUND', `automation "${n.slice(0, 64)}" does not exist`)) : all;
      const definitions = chosen.map((a) => a.definition);
      const names = [...new Set(definitions.flatMap(connectorsReferenced))];
      const exported = opts.environment ? await connectors.exportFrom(ctx, opts.environment, names) : [];
      return {
        format: EXPORT_FORMAT, version: EXPORT_VERSION, exportedAt: new Date(clock.now()).toISOString(),
        environment: opts.environment ?? null, automations: definitions, connectors: exported,
      };
    },

    /**
     * Imports a document: connectors (into `environment`, default the document's) and automations, created or
     * (with `overwrite`) replaced. Every write is checked first, then all are made in one transaction with their
     * audit events: a document refused anywhere, or a write that fails (a concurrent change, the audit log),
     * writes nothing. Listeners (the scheduler) hear of the automations once it has committed.
     */
    async import(ctx: TenantContext, doc: unknown, opts: { overwrite?: boolean; environment?: string }): Promise<ImportResult> {
      if (!Value.Check(ExportDocumentSchema, doc)) {
        const first = [...Value.Errors(ExportDocumentSchema, doc)][0];
        fail('VALIDATION_FAILED', `not a ${EXPORT_FORMAT} v${EXPORT_VERSION} document${first ? `: ${first.instancePath || '/'} ${first.message}` : ''}`);
      }
      const names = doc.automations.map((a) => a.name);
      if (new Set(names).size !== names.length) fail('VALIDATION_FAILED', 'the document names an automation twice');
      const existing = new Map((await automations.list(ctx)).map((a) => [a.definition.name, a]));
      if (!opts.overwrite) {
        const clash = names.find((n) => existing.has(n));
        if (clash) fail('AUTOMATION_EXISTS', `automation "${clash}" already exists (import with overwrite to replace it)`);
      }
      const target = opts.environment ?? doc.environment;
      if (doc.connectors.length > 0 && !target) fail('VALIDATION_FAILED', 'the document carries connectors: name the environment to import them into');
      // Each definition is checked as it will be saved: beside the document's connectors, as they will be in the target.
      const incoming: IncomingConnector[] = doc.connectors.map((c) => ({ name: c.name, environment: target!, slots: c.slots }));
      const staged: Array<StagedWrite<unknown>> = [];
      for (const def of doc.automations as AutomationDefinition[]) {
        const current = existing.get(def.name);
        staged.push(current ? await automations.prepareUpdate(ctx, def.name, def, current.revision, { incoming }) : await automations.prepareCreate(ctx, def, { incoming }));
      }
      // Connectors are written first, so the automations that use them never stand without them.
      if (doc.connectors.length > 0) staged.unshift(...(await connectors.prepareImport(ctx, target!, doc.connectors, { overwrite: opts.overwrite ?? false })));
      const results = await commitStaged(db, audit, staged);
      // A webhook trigger saved by the import got a new token: shown now, as a create shows it, or it is lost.
      const webhooks = results.filter(isSaved).flatMap((r) => (r.webhookToken ? [{ automation: r.automation, webhookToken: r.webhookToken }] : []));
      return { automations: names, connectors: doc.connectors.map((c) => c.name), webhooks };
    },
  };
}

export type AutomationExchange = ReturnType<typeof createAutomationExchange>;
