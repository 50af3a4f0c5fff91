import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { eventsOf, seed } from '../../../test/helpers/connectors.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const bearer = (baseUrl = 'https://api.pay.example/v1') => ({ baseUrl, healthPath: '/health', auth: { kind: 'bearer' } });

describeEachDialect('connectors: per environment, naming secrets, guarded by the secrets they carry', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await seed(h, h.ctx, 'PAY_TOKEN', { production: 'pay-token-production', staging: 'pay-token-staging' });
    await seed(h, h.ctx, 'ANNS_TOKEN', { production: 'anns-personal-token' }, 'user:ann');
    await seed(h, h.ctx, 'BOBS_TOKEN', { production: 'bobs-personal-token' }, 'bob');
    await userContext(h, h.ctx.tenantId, 'bob');
  });
  after(() => h.close());

  test('create, show, list, update and delete, each change audited in its own transaction', async () => {
    const created = await h.services.connectors.create(h.ctx, 'production', { name: 'stripe', type: 'http', owner: 'payments-team', settings: bearer(), slots: { token: 'PAY_TOKEN' } });
    assert.equal(created.environment, 'production');
    assert.equal(created.revision, 1);
    assert.equal(created.personal, false);
    assert.deepEqual(created.settings, { baseUrl: 'https://api.pay.example/v1', destinations: {}, healthPath: '/health', timeoutMs: 10_000, auth: { kind: 'bearer' } });
    assert.deepEqual((await h.services.connectors.get(h.ctx, 'production', 'stripe')).slots, { token: 'PAY_TOKEN' });
    assert.deepEqual((await h.services.connectors.list(h.ctx, 'production')).map((c) => c.name), ['stripe']);
    assert.deepEqual(await h.services.connectors.list(h.ctx, 'staging'), []);
    const updated = await h.services.connectors.update(h.ctx, 'production', 'stripe', { settings: bearer('https://api.pay.example/v2'), revision: 1 });
    assert.equal(updated.revision, 2);
    assert.equal(updated.settings.baseUrl, 'https://api.pay.example/v2');
    assert.equal(await codeOf(h.services.connectors.update(h.ctx, 'production', 'stripe', { owner: 'x', revision: 1 })), 'CAS_MISMATCH');
    await h.services.connectors.remove(h.ctx, 'production', 'stripe');
    assert.equal(await codeOf(h.services.connectors.get(h.ctx, 'production', 'stripe')), 'CONNECTOR_NOT_FOUND');
    const events = [...await eventsOf(h, 'connector.create'), ...await eventsOf(h, 'connector.update'), ...await eventsOf(h, 'connector.delete')].filter((e) => e.resource_name === 'stripe');
    assert.deepEqual(events.map((e) => e.action), ['connector.create', 'connector.update', 'connector.delete']);
    assert.equal(events[0]!.context.slots, 'token=PAY_TOKEN');
    assert.equal(events[1]!.context.fields, 'settings');
    assert.equal((await h.storage.db.selectFrom('connector_slots').selectAll().execute()).length, 0, 'slot index rows go with the connector');
  });

  test('the same name may exist once per environment; a second one in the same environment is CONNECTOR_EXISTS', async () => {
    await h.services.connectors.create(h.ctx, 'production', { name: 'dup', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'staging', { name: 'dup', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } });
    assert.equal(await codeOf(h.services.connectors.create(h.ctx, 'production', { name: 'dup', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'CONNECTOR_EXISTS');
  });

  test('bad definitions are refused with a clear 4xx naming the problem, and nothing is written', async () => {
    const rowsBefore = (await h.storage.db.selectFrom('connectors').selectAll().execute()).length;
    const eventsBefore = (await eventsOf(h, 'connector.create')).length;
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ slots: { token: 'NO_SUCH_SECRET' } }, 'SLOT_UNRESOLVED', /slot "token": secret "NO_SUCH_SECRET" does not exist/],
      [{ slots: {} }, 'SLOT_UNRESOLVED', /slot "token" is required/],
      [{ slots: { token: 'PAY_TOKEN', password: 'PAY_TOKEN' } }, 'SLOT_UNRESOLVED', /slot "password" is not a slot/],
      [{ slots: { token: 'bad name' } }, 'SLOT_UNRESOLVED', /slot "token" must name a secret/],
      [{ type: 'ftp' }, 'VALIDATION_FAILED', /type must be one of/],
      [{ settings: { ...bearer(), apiKey: 'sk_live_123' } }, 'VALIDATION_FAILED', /settings\.apiKey is not a setting/],
      [{ settings: { ...bearer('https://u:p@api.pay.example') } }, 'VALIDATION_FAILED', /credentials/],
      [{ settings: { ...bearer(), templateSecrets: ['NO_SUCH_SECRET'] } }, 'SLOT_UNRESOLVED', /templateSecrets.*NO_SUCH_SECRET/],
      [{ name: '1bad' }, 'INVALID_NAME', /connector names/],
      [{ name: 'x'.repeat(200) }, 'INVALID_NAME', /connector names/],
    ];
    for (const [patch, expected, message] of cases) {
      const input = { name: 'broken', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' }, ...patch };
      await assert.rejects(h.services.connectors.create(h.ctx, 'production', input), (e: { code?: string; message?: string }) => e.code === expected && message.test(e.message ?? ''), JSON.stringify(patch));
    }
    assert.equal(await codeOf(h.services.connectors.create(h.ctx, 'qa', { name: 'x', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'ENVIRONMENT_NOT_FOUND');
    assert.equal((await h.storage.db.selectFrom('connectors').selectAll().execute()).length, rowsBefore);
    assert.equal((await eventsOf(h, 'connector.create')).length, eventsBefore);
  });

  test('deciding where a credential goes needs write on its secret in that environment; reading needs list; a builder can do neither', async () => {
    const staging = await userContext(h, h.ctx.tenantId, 'sa-staging');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: staging.id, role: 'secret-admin', environments: ['staging'] });
    assert.equal(await codeOf(h.services.connectors.create(staging.ctx(), 'staging', { name: 'sa-made', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'ok');
    assert.equal(await codeOf(h.services.connectors.create(staging.ctx(), 'production', { name: 'sa-made', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'FORBIDDEN');
    const builder = await userContext(h, h.ctx.tenantId, 'builder-b');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: builder.id, role: 'builder' });
    assert.equal(await codeOf(h.services.connectors.create(builder.ctx(), 'staging', { name: 'b-made', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'FORBIDDEN');
    assert.equal(await codeOf(h.services.connectors.update(builder.ctx(), 'staging', 'sa-made', { owner: 'me' })), 'FORBIDDEN');
    assert.equal(await codeOf(h.services.connectors.remove(builder.ctx(), 'staging', 'sa-made')), 'FORBIDDEN');
    assert.equal(await codeOf(h.services.connectors.get(builder.ctx(), 'staging', 'sa-made')), 'ok', 'a builder may list');
    const stranger = await userContext(h, h.ctx.tenantId, 'no-grants');
    assert.equal(await codeOf(h.services.connectors.get(stranger.ctx(), 'staging', 'sa-made')), 'FORBIDDEN');
    assert.deepEqual(await h.services.connectors.list(stranger.ctx()), [], 'listing hides what the caller may not list');
  });

  test('a template secret counts as governed like a slot: who may not list or write it cannot read, list or delete the connector', async () => {
    await seed(h, h.ctx, 'CARD_KEY', { production: 'card-key-production' });
    await h.services.connectors.create(h.ctx, 'production', { name: 'templated', type: 'http', owner: 'o', settings: { ...bearer(), templateSecrets: ['CARD_KEY'] }, slots: { token: 'PAY_TOKEN' } });
    const pat = await userContext(h, h.ctx.tenantId, 'pay-admin');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: pat.id, role: 'secret-admin', environments: ['production'], namePatterns: ['PAY_*'] });
    assert.equal(await codeOf(h.services.connectors.get(pat.ctx(), 'production', 'templated')), 'FORBIDDEN');
    assert.ok(!(await h.services.connectors.list(pat.ctx(), 'production')).some((c) => c.name === 'templated'), 'listing hides it');
    assert.equal(await codeOf(h.services.connectors.remove(pat.ctx(), 'production', 'templated')), 'FORBIDDEN');
    assert.equal((await h.services.connectors.get(h.ctx, 'production', 'templated')).name, 'templated', 'still there');
  });

  test('another tenant sees none of these connectors: names are 404 and lists are empty', async () => {
    const other = await h.services.tenants.create(`conn-other-${dialect}`);
    const ctx = h.contextFor(other.id);
    await h.services.connectors.create(h.ctx, 'production', { name: 'mine', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } });
    assert.equal(await codeOf(h.services.connectors.get(ctx, 'production', 'mine')), 'CONNECTOR_NOT_FOUND');
    assert.equal(await codeOf(h.services.connectors.test(ctx, 'production', 'mine')), 'CONNECTOR_NOT_FOUND');
    assert.equal(await codeOf(h.services.connectors.remove(ctx, 'production', 'mine')), 'CONNECTOR_NOT_FOUND');
    assert.deepEqual(await h.services.connectors.list(ctx), []);
    assert.equal(await codeOf(h.services.connectors.create(ctx, 'production', { name: 'theirs', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } })), 'SLOT_UNRESOLVED', 'their tenant has no PAY_TOKEN');
  });

  test('inventory: dependents of a secret across environments, and connectors powered by a personal credential are flagged', async () => {
    await h.services.connectors.create(h.ctx, 'production', { name: 'ann-powered', type: 'http', owner: 'growth', settings: bearer(), slots: { token: 'ANNS_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'bob-powered', type: 'http', owner: 'growth', settings: bearer(), slots: { token: 'BOBS_TOKEN' } });
    const all = await h.services.connectors.list(h.ctx);
    assert.equal(all.find((c) => c.name === 'ann-powered')!.personal, true, 'owner user:ann');
    assert.equal(all.find((c) => c.name === 'bob-powered')!.personal, true, 'owner is a username of the tenant');
    assert.equal(all.find((c) => c.name === 'mine')!.personal, false, 'a team owner');
    const deps = await h.services.connectors.dependentsOf(h.ctx, 'PAY_TOKEN');
    assert.ok(deps.some((d) => d.environment === 'staging' && d.connector === 'dup' && d.slot === 'token'));
    assert.ok(deps.some((d) => d.environment === 'production' && d.connector === 'dup'));
    assert.deepEqual(await h.services.connectors.dependentsOf(h.ctx, 'ANNS_TOKEN'), [{ environment: 'production', connector: 'ann-powered', slot: 'token' }]);
    assert.equal(await codeOf(h.services.connectors.dependentsOf(h.ctx, 'NOPE')), 'SECRET_NOT_FOUND');
  });

  test('over HTTP: the routes, their schemas in the OpenAPI document, and strict input', async () => {
    const auth = { authorization: `Bearer ${h.rootToken}` };
    const create = await h.app.inject({ method: 'POST', url: '/v1/connectors/staging', headers: auth, payload: { name: 'via-http', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' } } });
    assert.equal(create.statusCode, 201, create.body);
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/connectors/staging/via-http', headers: auth })).statusCode, 200);
    const patch = await h.app.inject({ method: 'PATCH', url: '/v1/connectors/staging/via-http', headers: auth, payload: { owner: 'new-owner', revision: 1 } });
    assert.equal((patch.json() as { owner: string }).owner, 'new-owner');
    assert.ok(((await h.app.inject({ method: 'GET', url: '/v1/connectors', headers: auth })).json() as { items: unknown[] }).items.length > 3);
    assert.ok(((await h.app.inject({ method: 'GET', url: '/v1/secrets/PAY_TOKEN/connectors', headers: auth })).json() as { items: unknown[] }).items.length > 0);
    const unknown = await h.app.inject({ method: 'POST', url: '/v1/connectors/staging', headers: auth, payload: { name: 'x', type: 'http', owner: 'o', settings: bearer(), slots: { token: 'PAY_TOKEN' }, value: 'sk_live' } });
    assert.equal(unknown.statusCode, 400);
    assert.equal((unknown.json() as { error: { code: string } }).error.code, 'UNKNOWN_FIELD');
    const overrides = await h.app.inject({ method: 'POST', url: '/v1/connectors/staging/via-http/test', headers: auth, payload: { overrides: { token: 'guess' } } });
    assert.equal(overrides.statusCode, 400, 'overrides are not accepted over HTTP (no password oracle)');
    assert.equal((await h.app.inject({ method: 'DELETE', url: '/v1/connectors/staging/via-http?revision=1', headers: auth })).statusCode, 409);
    assert.equal((await h.app.inject({ method: 'DELETE', url: '/v1/connectors/staging/via-http', headers: auth })).statusCode, 200);
    const doc = (await h.app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as { paths: Record<string, unknown> };
    for (const path of ['/v1/connectors/{environment}', '/v1/connectors/{environment}/{name}', '/v1/connectors/{environment}/{name}/test', '/v1/proxy/{environment}/{connector}', '/v1/secrets/{name}/connectors']) {
      assert.ok(doc.paths[path], `${path} in the OpenAPI document`);
    }
    const person = await h.app.inject({ method: 'GET', url: '/v1/secrets/PAY_TOKEN/values/staging?purpose=use', headers: auth });
    assert.equal(person.statusCode, 400, 'purpose is an in-process option, never a query parameter');
  });
});
