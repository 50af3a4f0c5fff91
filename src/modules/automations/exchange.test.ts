import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { TenantContext } from '../shared/context.ts';
import type { AutomationService } from './automation-service.ts';
import { createConnectorExchange } from './connector-exchange.ts';
import { createAutomationExchange } from './exchange.ts';
import type { AutomationDefinition } from './types.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


const flow = (name: string, connector: string, over: Partial<AutomationDefinition> = {}): AutomationDefinition => ({
  name, runAs: 'import-runner', environments: ['import-target'], trigger: { type: 'manual' },
  steps: [{ id: 'call', type: 'http', connector: `{{ connectors.${connector} }}`, method: 'GET', path: '/v1/ping' }],
  ...over,
});

/** A document with one connector and two automations that use it, all named after `p`. */
const document = (p: string, over: { first?: Partial<AutomationDefinition> } = {}) => ({
  format: 'keyhold.automations', version: 1, exportedAt: new Date(0).toISOString(), environment: 'import-target',
  connectors: [{ name: `${p}pay`, type: 'http', owner: 'ops', settings: { baseUrl: 'http://127.0.0.1:9/api', auth: { kind: 'bearer' } }, slots: { token: 'IMPORT_API_KEY' } }],
  automations: [flow(`${p}-first`, `${p}pay`, over.first), flow(`${p}-second`, `${p}pay`)],
});

describeEachDialect('automations: an import commits everything or nothing', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  const notified: string[] = [];
  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
    await h.services.tenants.createEnvironment(ctx, 'import-target');
    await h.services.machines.create(ctx, { name: 'import-runner', kind: 'client_secret' });
    await h.services.secrets.create(ctx, { name: 'IMPORT_API_KEY', owner: 'ops' });
    for (const env of ['staging', 'import-target']) {
      await h.services.connectors.create(ctx, env, { name: 'elsewhere', type: 'http', settings: { baseUrl: 'http://127.0.0.1:9/api', auth: { kind: 'bearer' } }, slots: { token: 'IMPORT_API_KEY' }, owner: 'ops' });
    }
    h.services.automations.onChange((_tenant, automation, name) => notified.push(`${name}@${automation?.revision ?? 'gone'}`));
  });
  after(() => h.close());

  /** What the document of `p` left behind: its connectors, its automations and the audit events of their writes. */
  async function leftBy(p: string, except: string[] = []) {
    const connectors = (await h.services.connectors.list(ctx, 'import-target')).map((c) => c.name).filter((n) => n.startsWith(p));
    const automations = (await h.services.automations.list(ctx)).map((a) => a.definition.name).filter((n) => n.startsWith(p) && !except.includes(n));
    const events = (await h.storage.db.selectFrom('audit_events').select(['action', 'resource_name']).where('resource_name', 'like', `${p}%`).execute())
      .filter((e) => !except.includes(e.resource_name ?? '')).map((e) => `${e.action} ${e.resource_name}`);
    return { connectors, automations, events };
  }

  /** The import service, with someone else writing the automation `name` right after the import checked it. */
  function racingAfterCheck(name: string, race: () => Promise<unknown>) {
    const automations: AutomationService = { ...h.services.automations };
    let raced = false;
    for (const method of ['prepareCreate', 'prepareUpdate'] as const) {
      const real = automations[method] as (c: TenantContext, ...rest: unknown[]) => Promise<unknown>;
      (automations as Record<string, unknown>)[method] = async (c: TenantContext, ...rest: unknown[]) => {
        const checked = await real(c, ...rest);
        const def = rest.find((r): r is AutomationDefinition => typeof r === 'object' && r !== null && 'steps' in r);
        if (def?.name === name && !raced) {
          raced = true;
          await race();
        }
        return checked;
      };
    }
    return createAutomationExchange({ automations, connectors: createConnectorExchange(h.services.connectors), authz: h.services.authz, clock: h.clock, db: h.storage.db, audit: h.services.audit });
  }

  /** The import service, with someone else writing the connector `name` right after the import checked it. */
  function racingConnectorAfterCheck(name: string, race: () => Promise<unknown>) {
    const connectors = {
      list: h.services.connectors.list,
      prepareSave: async (...args: Parameters<typeof h.services.connectors.prepareSave>) => {
        const checked = await h.services.connectors.prepareSave(...args);
        if (args[2].name === name) await race();
        return checked;
      },
    };
    return createAutomationExchange({ automations: h.services.automations, connectors: createConnectorExchange(connectors), authz: h.services.authz, clock: h.clock, db: h.storage.db, audit: h.services.audit });
  }

  test('an automation created by someone else between the check and the write leaves no connector, automation or event of the import', async () => {
    const doc = document('race-create');
    const exchange = racingAfterCheck('race-create-second', () => h.services.automations.create(ctx, flow('race-create-second', 'elsewhere')));
    notified.length = 0;
    assert.equal(await codeOf(exchange.import(ctx, doc, {})), 'AUTOMATION_EXISTS');
    assert.deepEqual(await leftBy('race-create', ['race-create-second']), { connectors: [], automations: [], events: [] });
    assert.deepEqual(notified, ['race-create-second@1'], 'only the racing write was announced');
  });

  test('an automation changed by someone else between the check and the overwrite leaves no connector, automation or event of the import', async () => {
    await h.services.automations.create(ctx, flow('race-change-second', 'elsewhere'));
    const doc = document('race-change');
    const exchange = racingAfterCheck('race-change-second', () => h.services.automations.update(ctx, 'race-change-second', flow('race-change-second', 'elsewhere', { environments: ['staging', 'import-target'] }), 1));
    assert.equal(await codeOf(exchange.import(ctx, doc, { overwrite: true })), 'CAS_MISMATCH');
    assert.deepEqual(await leftBy('race-change', ['race-change-second']), { connectors: [], automations: [], events: [] });
    assert.equal((await h.services.automations.get(ctx, 'race-change-second')).revision, 2, 'the racing change stands');
  });

  test('a connector created by someone else between the check and the write leaves no connector, automation or event of the import', async () => {
    const doc = document('race-conn');
    const exchange = racingConnectorAfterCheck('race-connpay', () => h.services.connectors.create(ctx, 'import-target', { ...doc.connectors[0]!, owner: 'someone-else' }));
    assert.equal(await codeOf(exchange.import(ctx, doc, {})), 'CONNECTOR_EXISTS');
    const left = await leftBy('race-conn');
    assert.deepEqual(left.automations, []);
    assert.deepEqual(left.events, ['connector.create race-connpay'], 'only the racing write was audited');
    assert.equal((await h.services.connectors.get(ctx, 'import-target', 'race-connpay')).owner, 'someone-else');
  });

  test('an import the audit log cannot record writes nothing and announces nothing', async () => {
    notified.length = 0;
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      assert.equal(await codeOf(h.services.exchange.import(ctx, document('unaudited'), {})), 'AUDIT_UNAVAILABLE');
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    assert.deepEqual(await leftBy('unaudited'), { connectors: [], automations: [], events: [] });
    assert.deepEqual(notified, []);
  });

  test('a good import writes every connector and automation with its events, and the scheduler and listeners learn of them', async () => {
    notified.length = 0;
    const doc = document('good', { first: { trigger: { type: 'schedule', cron: '0 3 * * *', environment: 'import-target' } } });
    assert.deepEqual(await h.services.exchange.import(ctx, doc, {}), { automations: ['good-first', 'good-second'], connectors: ['goodpay'], webhooks: [] });
    const left = await leftBy('good');
    assert.deepEqual(left.connectors, ['goodpay']);
    assert.deepEqual(left.automations, ['good-first', 'good-second']);
    assert.deepEqual(left.events.sort(), ['automation.create good-first', 'automation.create good-second', 'connector.create goodpay']);
    assert.deepEqual(notified, ['good-first@1', 'good-second@1']);
    assert.ok(h.services.scheduler.nextRun(ctx.tenantId, 'good-first'), 'the imported schedule is armed');
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test('an overwrite import replaces connectors and automations at their next revision, each with its event', async () => {
    const doc = document('good');
    notified.length = 0;
    const result = await h.services.exchange.import(ctx, doc, { overwrite: true });
    assert.deepEqual(result, { automations: ['good-first', 'good-second'], connectors: ['goodpay'], webhooks: [] });
    assert.deepEqual(notified, ['good-first@2', 'good-second@2']);
    assert.equal(h.services.scheduler.nextRun(ctx.tenantId, 'good-first'), null, 'the schedule the import removed is disarmed');
    const updates = (await leftBy('good')).events.filter((e) => e.includes('.update')).sort();
    assert.deepEqual(updates, ['automation.update good-first', 'automation.update good-second', 'connector.update goodpay']);
  });

  test('an imported webhook trigger gets its token in the import\'s answer, once, and only that token finds it', async () => {
    const doc = document('hook', { first: { trigger: { type: 'webhook', environment: 'import-target' } } });
    const result = await h.services.exchange.import(ctx, doc, {});
    assert.deepEqual(result.webhooks.map((w) => w.automation.definition.name), ['hook-first']);
    const [hook] = result.webhooks;
    assert.ok(hook!.webhookToken?.startsWith('whk_'));
    assert.equal((await h.services.automations.byWebhook(hook!.automation.id, hook!.webhookToken!))?.name, 'hook-first');
    const again = await h.services.exchange.import(ctx, doc, { overwrite: true });
    assert.deepEqual(again.webhooks, [], 'an overwrite keeps the token it had, and shows none');
    assert.equal((await h.services.automations.byWebhook(hook!.automation.id, hook!.webhookToken!))?.name, 'hook-first');
  });
});
