import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import { fail } from '../../errors/index.ts';
import { SYSTEM_ACTOR } from '../shared/context.ts';
import type { AutomationService } from './automation-service.ts';
import type { AutomationExchange } from './exchange.ts';
import type { Inventory } from './inventory.ts';
import type { Runner } from './runner.ts';
import type { RunQueries } from './runs.ts';
import { DefinitionSchema } from './types.ts';

const AutomationSchema = Type.Object({
  id: Type.String(), definition: DefinitionSchema, revision: Type.Integer(), createdAt: Type.String(), createdBy: Type.String(), updatedAt: Type.String(),
});
const Saved = Type.Object({
  automation: AutomationSchema,
  webhookToken: Type.Union([Type.String(), Type.Null()], { description: 'Shown once, when a webhook trigger is created' }),
  webhookPath: Type.Union([Type.String(), Type.Null()]),
});
const stepFields = {
  id: Type.String(), type: Type.String(), status: Type.String(), startedAt: Type.Union([Type.String(), Type.Null()]), durationMs: Type.Number(),
  error: Type.Union([Type.String(), Type.Null()]),
};
const StepRecordSchema = Type.Object({ ...stepFields, output: Type.Unknown(), log: Type.String() });
const StepSummarySchema = Type.Object(stepFields);
const runFields = {
  id: Type.String(), automation: Type.String(), environment: Type.String(), trigger: Type.String(), status: Type.String(),
  startedAt: Type.String(), finishedAt: Type.Union([Type.String(), Type.Null()]), actor: Type.Object({ type: Type.String(), id: Type.String() }),
  revision: Type.Integer(), error: Type.Union([Type.String(), Type.Null()]),
};
const RunSchema = Type.Object({ ...runFields, steps: Type.Array(StepRecordSchema) });
/** A listed run: its steps without output or log (`GET /v1/runs/:id` has those). */
const RunSummarySchema = Type.Object({ ...runFields, steps: Type.Array(StepSummarySchema) });
const NameParams = Type.Object({ name: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const tenant = { auth: 'tenant' as const };
const hookPath = (id: string) => `/v1/hooks/${id}/<token>`;

/** Automations, their runs, export/import, the webhook trigger and the dependents inventory. */
export function automationRoutes(deps: { automations: AutomationService; runner: Runner; runs: RunQueries; exchange: AutomationExchange; inventory: Inventory; isSealed: () => boolean }) {
  const { automations, runner, runs, exchange, inventory } = deps;
  const saved = <T extends { automation: { id: string }; webhookToken: string | null }>(r: T) => ({ ...r, webhookPath: r.webhookToken ? hookPath(r.automation.id) : null });

  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.post('/v1/automations', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'Save a new automation (every reference checked; literal credentials refused)', body: DefinitionSchema, response: { 201: Saved, ...errorResponses } },
    }, async (req, reply) => reply.code(201).send(saved(await automations.create(tenantContextOf(req), req.body))));

    r.get('/v1/automations', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'List automations', response: { 200: Type.Object({ items: Type.Array(AutomationSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await automations.list(tenantContextOf(req)) }));

    r.get('/v1/automations/export', {
      config: tenant,
      schema: {
        tags: ['automations'], summary: 'Export automations (and, with an environment, their connectors) as references only',
        querystring: Type.Object({ names: Type.Optional(Type.String({ maxLength: 4096 })), environment: Type.Optional(Type.String({ maxLength: 63 })) }, { additionalProperties: false }),
        response: { 200: Type.Unknown(), ...errorResponses },
      },
    }, (req) => exchange.export(tenantContextOf(req), {
      ...(req.query.names ? { names: req.query.names.split(',').filter(Boolean) } : {}), ...(req.query.environment ? { environment: req.query.environment } : {}),
    }));

    r.post('/v1/automations/import', {
      config: tenant,
      schema: {
        tags: ['automations'], summary: 'Import an export document into this tenant (names resolve here)',
        body: Type.Object({ document: Type.Unknown(), overwrite: Type.Optional(Type.Boolean()), environment: Type.Optional(Type.String({ maxLength: 63 })) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            automations: Type.Array(Type.String()), connectors: Type.Array(Type.String()),
            webhooks: Type.Array(Saved, { description: 'The webhook triggers the import saved with a new token, each shown this once' }),
          }),
          ...errorResponses,
        },
      },
    }, async (req) => {
      const result = await exchange.import(tenantContextOf(req), req.body.document, {
        ...(req.body.overwrite !== undefined ? { overwrite: req.body.overwrite } : {}), ...(req.body.environment ? { environment: req.body.environment } : {}),
      });
      return { ...result, webhooks: result.webhooks.map(saved) };
    });

    r.get('/v1/automations/:name', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'One automation', params: NameParams, response: { 200: AutomationSchema, ...errorResponses } },
    }, (req) => automations.get(tenantContextOf(req), req.params.name));

    r.put('/v1/automations/:name', {
      config: tenant,
      schema: {
        tags: ['automations'], summary: 'Replace a definition (check-and-set on revision)', params: NameParams,
        body: Type.Object({ definition: DefinitionSchema, revision: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
        response: { 200: Saved, ...errorResponses },
      },
    }, async (req) => saved(await automations.update(tenantContextOf(req), req.params.name, req.body.definition, req.body.revision)));

    r.delete('/v1/automations/:name', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'Delete an automation (its runs stay)', params: NameParams, response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await automations.remove(tenantContextOf(req), req.params.name);
      return reply.code(204).send(null);
    });

    r.post('/v1/automations/:name/webhook-token', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'Replace the webhook trigger token (the old one stops working)', params: NameParams, response: { 200: Saved, ...errorResponses } },
    }, async (req) => saved(await automations.rotateWebhookToken(tenantContextOf(req), req.params.name)));

    r.post('/v1/automations/:name/runs', {
      config: tenant,
      schema: {
        tags: ['automations'], summary: 'Run an automation by hand in an environment', params: NameParams,
        body: Type.Object({
          environment: Type.String({ minLength: 1, maxLength: 63 }), input: Type.Optional(Type.Unknown()),
          wait: Type.Optional(Type.Boolean({ description: 'Answer when the run has finished (default true)' })),
        }, { additionalProperties: false }),
        response: { 200: RunSchema, 202: RunSchema, ...errorResponses },
      },
    }, async (req, reply) => {
      const wait = req.body.wait ?? true;
      const run = await runner.start(tenantContextOf(req), req.params.name, { environment: req.body.environment, input: req.body.input, trigger: 'manual', wait });
      return reply.code(wait ? 200 : 202).send(run);
    });

    r.get('/v1/runs', {
      config: tenant,
      schema: {
        tags: ['automations'], summary: 'Recent runs, newest first; each step without its output or log (read one run for those)',
        querystring: Type.Object({ automation: Type.Optional(Type.String({ maxLength: 64 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(RunSummarySchema) }), ...errorResponses },
      },
    }, async (req) => ({ items: await runs.list(tenantContextOf(req), req.query) }));

    r.get('/v1/runs/:id', {
      config: tenant,
      schema: { tags: ['automations'], summary: 'One run with its steps (redacted)', params: Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false }), response: { 200: RunSchema, ...errorResponses } },
    }, (req) => runs.get(tenantContextOf(req), req.params.id));

    // The webhook trigger: the token in the path is the credential (callers often cannot set headers).
    r.post('/v1/hooks/:id/:token', {
      config: { auth: 'none' },
      schema: {
        tags: ['automations'], summary: 'Trigger an automation with a webhook (body becomes the run input)',
        params: Type.Object({ id: Type.String({ maxLength: 64 }), token: Type.String({ maxLength: 100 }) }, { additionalProperties: false }),
        body: Type.Optional(Type.Unknown()),
        response: { 202: Type.Object({ runId: Type.String(), status: Type.String() }), ...errorResponses },
      },
    }, async (req, reply) => {
      if (deps.isSealed()) fail('SEALED', 'the server is sealed');
      const row = await automations.byWebhook(req.params.id, req.params.token);
      if (!row) fail('UNAUTHENTICATED', 'unknown webhook or wrong token');
      const def = JSON.parse(row.definition) as { trigger: { type: string; environment?: string } };
      if (def.trigger.type !== 'webhook' || !def.trigger.environment) fail('UNAUTHENTICATED', 'unknown webhook or wrong token');
      const ctx = { tenantId: row.tenant_id, actor: SYSTEM_ACTOR, requestId: req.id, sourceIp: req.ip };
      const run = await runner.start(ctx, row.name, { environment: def.trigger.environment, input: req.body ?? {}, trigger: 'webhook', wait: false });
      return reply.code(202).send({ runId: run.id, status: run.status });
    });

    r.get('/v1/secrets/:name/dependents', {
      config: tenant,
      schema: {
        tags: ['inventory'], summary: 'What depends on a secret: connectors per environment and the automations using it',
        params: Type.Object({ name: Type.String({ maxLength: 128 }) }, { additionalProperties: false }), response: { 200: Type.Unknown(), ...errorResponses },
      },
    }, (req) => inventory.dependentsOf(tenantContextOf(req), req.params.name));

    r.get('/v1/inventory/connectors', {
      config: tenant,
      schema: { tags: ['inventory'], summary: 'Connectors, the automations using each, and personal credentials in shared use (flagged)', response: { 200: Type.Unknown(), ...errorResponses } },
    }, async (req) => ({ items: await inventory.connectorUse(tenantContextOf(req)) }));
  };
}
