import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import type { TenantContext } from '../shared/context.ts';
import type { AutomationDefinition } from './types.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const message = (p: Promise<unknown>) => p.then(() => '', (e: Error) => e.message);

const payments = (over: Partial<AutomationDefinition> = {}): AutomationDefinition => ({
  name: 'charge-customer',
  runAs: 'checkout-runner',
  environments: ['staging', 'production'],
  trigger: { type: 'manual' },
  steps: [
    { id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', body: { amount: '{{ input.amount }}' } },
    { id: 'receipt', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: '/v1/receipts', query: { charge: '{{ steps.charge.output.body.id }}' } },
  ],
  ...over,
});

describeEachDialect('automations: definitions hold checked references only', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
    await h.services.machines.create(ctx, { name: 'checkout-runner', kind: 'client_secret' });
    await h.services.secrets.create(ctx, { name: 'PAYMENT_API_KEY', owner: 'payments-team' });
    for (const env of ['staging', 'production']) {
      await h.services.connectors.create(ctx, env, { name: 'payments', type: 'http', settings: { baseUrl: 'http://127.0.0.1:9/api', auth: { kind: 'bearer' } }, slots: { token: 'PAYMENT_API_KEY' }, owner: 'payments-team' });
    }
  });
  after(() => h.close());

  test('a definition whose references all resolve is saved, and reads back as saved', async () => {
    const { automation, webhookToken } = await h.services.automations.create(ctx, payments());
    assert.equal(automation.revision, 1);
    assert.equal(webhookToken, null);
    assert.deepEqual((await h.services.automations.get(ctx, 'charge-customer')).definition, payments());
  });

  test('an unknown secret, connector, step or machine is refused naming the step and field, and nothing is written', async () => {
    const cases: Array<[AutomationDefinition, RegExp]> = [
      [payments({ name: 'a1', steps: [{ id: 's', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: '/x', headers: { 'X-Key': '{{ secrets.NOPE }}' } }] }), /steps\[0\] \(s\)\.headers\.X-Key: unknown secret "NOPE"/],
      [payments({ name: 'a2', steps: [{ id: 's', type: 'http', connector: '{{ connectors.nope }}', method: 'GET', path: '/x' }] }), /steps\[0\] \(s\)\.connector: unknown connector "nope"/],
      [payments({ name: 'a3', steps: [{ id: 's', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: '/x', query: { q: '{{ steps.later.output }}' } }] }), /"later" is not an earlier step/],
      [payments({ name: 'a4', runAs: 'ghost' }), /runAs: no live machine identity named "ghost"/],
      [payments({ name: 'a5', environments: ['qa'] }), /unknown environment "qa"/],
      [payments({ name: 'a6', steps: [{ id: 's', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: '/x', body: '{{ vault.KEY }}' }] }), /unknown reference "vault"/],
      [payments({ name: 'a7', steps: [{ id: 's', type: 'script', source: 'export default async (i, { secrets }) => secrets.get("MISSING_ONE")' }] }), /secrets\.get\("MISSING_ONE"\) names an unknown secret/],
    ];
    for (const [def, expected] of cases) {
      assert.equal(await codeOf(h.services.automations.create(ctx, def)), 'INVALID_REFERENCE', def.name);
      assert.match(await message(h.services.automations.create(ctx, def)), expected);
    }
    const names = (await h.services.automations.list(ctx)).map((a) => a.definition.name);
    assert.ok(!names.some((n) => /^a\d$/.test(n)), 'no refused definition was written');
  });

  test('a secret in a request path is refused: paths end up in upstream logs', async () => {
    const def = payments({ name: 'in-path', steps: [{ id: 's', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: '/x/{{ secrets.PAYMENT_API_KEY }}' }] });
    assert.match(await message(h.services.automations.create(ctx, def)), /secrets may not appear in a request path/);
  });

  test('a definition pasted with a real-looking API key is refused at save, naming the field and never echoing the key', async () => {
    const key = 'sk_live_' + '4eC39HqLyjWDarjtT1zdp7dc';
    const def = payments({ name: 'pasted', steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', headers: { Authorization: `Bearer ${key}` } }] });
    assert.equal(await codeOf(h.services.automations.create(ctx, def)), 'LITERAL_CREDENTIAL');
    const text = await message(h.services.automations.create(ctx, def));
    assert.match(text, /steps\[0\] \(charge\)\.headers\.Authorization looks like a literal credential/);
    assert.match(text, /store it as a secret/);
    assert.ok(!text.includes(key) && !text.includes('4eC39HqLyjWDarjtT1zdp7dc'));
    const inScript = payments({ name: 'pasted-script', steps: [{ id: 'run', type: 'script', source: `const k = "${key}"; export default async () => ({ k })` }] });
    assert.equal(await codeOf(h.services.automations.create(ctx, inScript)), 'LITERAL_CREDENTIAL');
  });

  test('a credential pasted as a body key is refused naming the object it sits in, never the key itself', async () => {
    const key = 'sk_live_' + '9rT4mQ2xLw8ZpK3vB7nY1cHd';
    const def = payments({ name: 'pasted-key', steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', body: { auth: { [key]: true } } }] });
    const text = await message(h.services.automations.create(ctx, def));
    assert.match(text, /steps\[0\] \(charge\)\.body\.auth \(a key\) looks like a literal credential/);
    assert.ok(!text.includes(key) && !text.includes('9rT4mQ2xLw8ZpK3vB7nY1cHd'), text);
  });

  test('a literal pasted as the value of a credential-named header, query parameter or body field is refused', async () => {
    // The field's name is the key of the assignment: the value alone has no "password=" to give it away.
    const step = (over: Record<string, unknown>, name = 'pasted-field') => payments({ name, steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', ...over }] });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ headers: { Authorization: 'Bearer a8Fk2Lq9Zx7Pw3Nm' } }, /headers\.Authorization/],
      [{ headers: { 'X-Api-Key': 'q7W2e9R4t6Y1zZ' } }, /headers\.X-Api-Key/],
      [{ query: { api_key: 'Zq1-Xw2-Ec3-Rv4' } }, /query\.api_key/],
      [{ body: { password: 'Tr0ub4dor&3x' } }, /body\.password/],
      [{ body: { auth: { client_secret: '9f8e7d6cBA54xyz' } } }, /body\.auth\.client_secret/],
      [{ body: { tokens: ['mF_9.B5f-4.1JqM'] } }, /body\.tokens\[0\]/],
    ];
    for (const [over, field] of cases) {
      const text = await message(h.services.automations.create(ctx, step(over)));
      assert.match(text, /looks like a literal credential \(generic-secret-assignment\)/, JSON.stringify(over));
      assert.match(text, field);
    }
    const fine = [
      { headers: { 'X-Api-Key': '{{ secrets.PAYMENT_API_KEY }}', Authorization: 'Bearer {{ secrets.PAYMENT_API_KEY }}' } },
      { body: { token_type: 'Bearer', password_policy: 'min-length-12', secret: 'changeme' }, query: { token: 'ch_3Nx' } },
    ];
    for (const [i, over] of fine.entries()) assert.equal(await codeOf(h.services.automations.create(ctx, step(over, `field-ok-${i}`))), 'ok', JSON.stringify(over));
  });

  test('two editors saving against the same revision: exactly one wins, the other gets CAS_MISMATCH', async () => {
    await h.services.automations.create(ctx, payments({ name: 'raced' }));
    const results = await Promise.all([1, 2].map((n) => codeOf(h.services.automations.update(ctx, 'raced', payments({ name: 'raced', description: `editor ${n}` }), 1))));
    assert.deepEqual(results.sort(), ['CAS_MISMATCH', 'ok']);
    assert.equal((await h.services.automations.get(ctx, 'raced')).revision, 2);
  });

  test('another tenant sees none of it: names and run ids give 404', async () => {
    const other = await h.services.tenants.create('other-co');
    const otherCtx = h.contextFor(other.id);
    assert.equal(await codeOf(h.services.automations.get(otherCtx, 'charge-customer')), 'AUTOMATION_NOT_FOUND');
    assert.equal(await codeOf(h.services.runs.get(otherCtx, '00000000-0000-0000-0000-000000000000')), 'RUN_NOT_FOUND');
    assert.deepEqual(await h.services.automations.list(otherCtx), []);
  });

  test('a builder who may use a secret only in staging cannot save an automation that may run in production', async () => {
    const bea = await userContext(h, ctx.tenantId, 'bea');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: bea.id, role: 'builder', environments: ['staging'] });
    assert.equal(await codeOf(h.services.automations.create(bea.ctx(), payments({ name: 'bea-prod' }))), 'FORBIDDEN');
    assert.equal(await codeOf(h.services.automations.create(bea.ctx(), payments({ name: 'bea-staging', environments: ['staging'] }))), 'ok');
  });

  test('a caller who may not list the tenant is refused alike for an automation that exists and one that does not', async () => {
    const nobody = await userContext(h, ctx.tenantId, 'no-grants');
    await h.services.automations.create(ctx, payments({ name: 'probed' }));
    for (const name of ['probed', 'never-was']) {
      assert.equal(await codeOf(h.services.automations.get(nobody.ctx(), name)), 'FORBIDDEN', name);
      assert.equal(await codeOf(h.services.automations.update(nobody.ctx(), name, payments({ name }), 1)), 'FORBIDDEN', name);
      assert.equal(await codeOf(h.services.automations.remove(nobody.ctx(), name)), 'FORBIDDEN', name);
      assert.equal(await codeOf(h.services.automations.rotateWebhookToken(nobody.ctx(), name)), 'FORBIDDEN', name);
    }
  });

  test('a viewer can read definitions but not save them', async () => {
    const vic = await userContext(h, ctx.tenantId, 'vic');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: vic.id, role: 'viewer' });
    assert.equal((await h.services.automations.get(vic.ctx(), 'charge-customer')).definition.name, 'charge-customer');
    assert.equal(await codeOf(h.services.automations.create(vic.ctx(), payments({ name: 'vic' }))), 'FORBIDDEN');
  });

  test('taking definitions out is the export permission: a viewer reads them but cannot export, a secret-admin can', async () => {
    const vera = await userContext(h, ctx.tenantId, 'vera');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: vera.id, role: 'viewer' });
    assert.equal(await codeOf(h.services.exchange.export(vera.ctx(), { environment: 'production' })), 'FORBIDDEN');
    const sam = await userContext(h, ctx.tenantId, 'sam');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: sam.id, role: 'secret-admin' });
    assert.ok((await h.services.exchange.export(sam.ctx(), { environment: 'production' })).automations.some((a) => a.name === 'charge-customer'));
  });

  test('an import that fails on a later connector or automation writes nothing at all', async () => {
    const doc = { format: 'keyhold.automations', version: 1, exportedAt: new Date(0).toISOString(), environment: 'staging', automations: [payments({ name: 'imported-flow', environments: ['staging'] })], connectors: [] };
    const connector = (name: string, baseUrl: string) => ({ name, type: 'http', owner: 'ops', settings: { baseUrl, auth: { kind: 'bearer' } }, slots: { token: 'PAYMENT_API_KEY' } });
    await h.services.tenants.createEnvironment(ctx, 'import-target');
    // The second connector points at the cloud metadata address: refused, but only when it is created.
    const badConnector = { ...doc, connectors: [connector('payments', 'http://127.0.0.1:9/api'), connector('metadata', 'https://169.254.169.254/latest')] };
    assert.equal(await codeOf(h.services.exchange.import(ctx, badConnector, { environment: 'import-target' })), 'VALIDATION_FAILED');
    // The automation overwrites one whose old definition this builder may not author (it runs in production).
    const bob = await userContext(h, ctx.tenantId, 'bob-importer');
    for (const role of ['builder', 'secret-admin']) await h.services.grants.create(ctx, { principalType: 'user', principalId: bob.id, role, environments: ['staging', 'import-target'] });
    const prodRunner = await h.services.machines.create(ctx, { name: 'prod-runner', kind: 'client_secret' });
    await h.services.grants.create(ctx, { principalType: 'machine', principalId: prodRunner.id, role: 'builder', environments: ['production'] });
    await h.services.automations.create(ctx, payments({ name: 'prod-only-flow', runAs: 'prod-runner', environments: ['production'] }));
    const overwrite = { ...doc, connectors: [connector('payments', 'http://127.0.0.1:9/api')], automations: [payments({ name: 'imported-flow', environments: ['staging'] }), payments({ name: 'prod-only-flow', environments: ['staging'] })] };
    assert.equal(await codeOf(h.services.exchange.import(bob.ctx(), overwrite, { environment: 'import-target', overwrite: true })), 'FORBIDDEN');
    assert.deepEqual((await h.services.connectors.list(ctx, 'import-target')).map((c) => c.name), [], 'no connector was written');
    assert.ok(!(await h.services.automations.list(ctx)).some((a) => a.definition.name === 'imported-flow'), 'no automation was written');
  });

  test('a webhook trigger gets a token shown once; only that token finds the automation, and rotating it retires the old one', async () => {
    const { automation, webhookToken } = await h.services.automations.create(ctx, payments({ name: 'hooked', trigger: { type: 'webhook', environment: 'staging' } }));
    assert.ok(webhookToken?.startsWith('whk_'));
    assert.equal((await h.services.automations.byWebhook(automation.id, webhookToken!))?.name, 'hooked');
    assert.equal(await h.services.automations.byWebhook(automation.id, webhookToken!.slice(0, -1) + 'x'), null);
    const rotated = await h.services.automations.rotateWebhookToken(ctx, 'hooked');
    assert.equal(await h.services.automations.byWebhook(automation.id, webhookToken!), null);
    assert.equal((await h.services.automations.byWebhook(automation.id, rotated.webhookToken))?.name, 'hooked');
    const stored = JSON.stringify(await h.storage.db.selectFrom('automations').selectAll().execute());
    assert.ok(!stored.includes(rotated.webhookToken), 'only the hash of the token is stored');
  });

  test('a body nested past the limits is a 400 (never a stack overflow), over HTTP and in an import, and nothing is written', async () => {
    const deep = (levels: number) => JSON.parse('['.repeat(levels) + ']'.repeat(levels)) as unknown;
    const def = (body: unknown) => payments({ name: 'deep', steps: [{ id: 's', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/x', body }] });
    const post = (levels: number) => h.app.inject({
      method: 'POST', url: '/v1/automations', headers: { authorization: `Bearer ${h.rootToken}`, 'content-type': 'application/json' },
      payload: JSON.stringify(def('DEEP')).replace('"DEEP"', '['.repeat(levels) + ']'.repeat(levels)),
    });
    for (const [levels, expected] of [[5000, /nest deeper than 64 levels/], [40, /steps\[0\] \(s\)\.body nests deeper than 32 levels/]] as const) {
      const res = await post(levels);
      assert.equal(res.statusCode, 400, res.body);
      assert.equal(res.json().error.code, 'VALIDATION_FAILED');
      assert.match(res.json().error.message, expected);
    }
    const doc = { format: 'keyhold.automations', version: 1, exportedAt: new Date(0).toISOString(), environment: null, automations: [def(deep(5000))], connectors: [] };
    assert.equal(await codeOf(h.services.exchange.import(ctx, doc, {})), 'VALIDATION_FAILED');
    assert.equal(await codeOf(h.services.automations.get(ctx, 'deep')), 'AUTOMATION_NOT_FOUND');
    assert.equal(await codeOf(h.services.automations.create(ctx, def(deep(32)))), 'ok', 'the limit itself is allowed');
    await h.services.automations.remove(ctx, 'deep');
  });

  test('an invalid cron expression is refused', async () => {
    const def = payments({ name: 'bad-cron', trigger: { type: 'schedule', cron: 'every tuesday', environment: 'staging' } });
    assert.match(await message(h.services.automations.create(ctx, def)), /trigger\.cron/);
  });

  test('every change is an audit event', async () => {
    const events = await h.storage.db.selectFrom('audit_events').select(['action', 'resource_name']).where('resource_type', '=', 'automation').execute();
    const actions = new Set(events.map((e) => e.action));
    for (const a of ['automation.create', 'automation.update', 'automation.webhook_token']) assert.ok(actions.has(a), a);
  });
});
