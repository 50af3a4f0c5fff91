import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import { createPolicyService } from './policy-service.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const EXAMPLE = readFileSync(new URL('../../../docs/examples/tenant-policies.cedar', import.meta.url), 'utf8');

describeEachDialect('tenant policies: validated before they take effect, versioned, diffable, rolled back', (dialect) => {
  let h: Harness;
  let revealer: Awaited<ReturnType<typeof userContext>>;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'PROD_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PROD_KEY', 'production', { value: 'prod-value' });
    revealer = await userContext(h, h.ctx.tenantId, 'rita', { mfaAgoMs: 7 * 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: revealer.id, role: 'revealer' });
  });
  after(() => h.close());

  test('a tenant policy takes effect on the next request', async () => {
    assert.equal(await codeOf(h.services.values.read(revealer.ctx(), 'PROD_KEY', 'production')), 'ok');
    const v1 = await h.services.policies.put(h.ctx, { text: EXAMPLE, comment: 'stricter production reveals' });
    assert.equal(v1.version, 1);
    assert.equal(await codeOf(h.services.values.read(revealer.ctx(), 'PROD_KEY', 'production')), 'FORBIDDEN', 'MFA 7 minutes old is too old for this tenant');
  });

  test('a policy that fails validation never takes effect, and the version in force stays', async () => {
    for (const bad of ['permit (principal, action, resource) when { context.nosuch == 1 };', 'permit (principal, action', 'permit (principal, action == Keyhold::Action::"fly", resource);']) {
      assert.equal(await codeOf(h.services.policies.put(h.ctx, { text: bad })), 'POLICY_INVALID');
    }
    assert.equal((await h.services.policies.current(h.ctx)).version, 1);
    assert.equal((await h.services.policies.history(h.ctx)).length, 1);
    assert.deepEqual((await h.services.policies.validate(h.ctx, 'permit (principal, action')).valid, false);
  });

  test('a policy file that repeats an @id, or gives one that could be misread, is refused whole (POLICY_INVALID, over the service and HTTP), and the version in force stays', async () => {
    const forbidReveal = 'forbid (principal, action == Keyhold::Action::"reveal", resource);';
    const permitList = 'permit (principal, action == Keyhold::Action::"list", resource);';
    const duplicates = [
      `@id("no-prod-reveal") ${forbidReveal}\n@id("no-prod-reveal") ${permitList}`,
      // An explicit id that looks like a position can no longer collide with an unnamed policy's id.
      `@id("#2") ${forbidReveal}\n${permitList}`,
      `@id("") ${forbidReveal}`,
      // Decisions are audited as a comma-separated list of ids: one with a comma could pass for a built-in's refusal.
      `@id("mine,builtin:step-up") ${forbidReveal}`,
      `@id("line\\nbreak") ${forbidReveal}`,
      `@id("\\u{202e}desrever") ${forbidReveal}`,
    ];
    for (const text of duplicates) {
      assert.equal(await codeOf(h.services.policies.put(h.ctx, { text })), 'POLICY_INVALID', text);
      assert.equal((await h.services.policies.validate(h.ctx, text)).valid, false);
      const res = await h.app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { text } });
      assert.equal(res.statusCode, 400, res.body);
      assert.equal(res.json().error.code, 'POLICY_INVALID');
    }
    assert.equal((await h.services.policies.current(h.ctx)).version, 1);
    assert.equal((await h.services.policies.history(h.ctx)).length, 1);
    // Unnamed policies beside a named "2" are all kept: ids by position cannot collide with explicit ones.
    assert.equal((await h.services.policies.validate(h.ctx, `@id("2") ${forbidReveal}\n${permitList}\n${permitList}`)).valid, true);
  });

  test('a tenant policy can never widen access past the tenant boundary or the built-in forbids', async () => {
    const v = await h.services.policies.put(h.ctx, { text: '@id("everything") permit (principal, action, resource);', comment: 'too broad' });
    assert.equal(v.version, 2);
    const other = await h.services.tenants.create('policy-other');
    await h.services.secrets.create(h.contextFor(other.id), { name: 'THEIRS', owner: 'x' });
    await h.services.values.write(h.contextFor(other.id), 'THEIRS', 'production', { value: 'theirs' });
    // Decisions use the target tenant's policies: the victim tenant itself permits everything.
    await h.services.policies.put(h.contextFor(other.id), { text: '@id("everything") permit (principal, action, resource);', comment: 'victim permits all' });
    const fresh = await userContext(h, h.ctx.tenantId, 'fresh-outsider', { mfaAgoMs: 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: fresh.id, role: 'revealer' });
    for (const outsider of [revealer, fresh]) {
      const forged = { ...outsider.ctx(), tenantId: other.id };
      assert.equal(await codeOf(h.services.values.read(forged, 'THEIRS', 'production')), 'SECRET_NOT_FOUND');
      assert.equal(await codeOf(h.services.secrets.list(forged)), 'ok');
      assert.deepEqual((await h.services.secrets.list(forged)).items, [], 'not even listed');
    }
    const stale = await userContext(h, h.ctx.tenantId, 'stale', { mfaAgoMs: 3_600_000 });
    assert.equal(await codeOf(h.services.values.read(stale.ctx(), 'PROD_KEY', 'production')), 'STEP_UP_REQUIRED');
  });

  test('versions are diffable and a rollback re-applies an older text as a new version', async () => {
    const diff = await h.services.policies.diff(h.ctx, 1, 2);
    assert.match(diff.diff, /^\+ @id\("everything"\)/m);
    assert.match(diff.diff, /^- @id\("prod-reveal-needs-recent-mfa"\)/m);
    const back = await h.services.policies.rollback(h.ctx, 1);
    assert.deepEqual([back.version, back.comment, back.active], [3, 'rollback to version 1', true]);
    assert.equal((await h.services.policies.get(h.ctx, 3)).text, EXAMPLE);
    assert.equal(await codeOf(h.services.values.read(revealer.ctx(), 'PROD_KEY', 'production')), 'FORBIDDEN');
    const none = await h.services.policies.rollback(h.ctx, 0);
    assert.equal(none.text, '');
    assert.equal(await codeOf(h.services.values.read(revealer.ctx(), 'PROD_KEY', 'production')), 'ok');
    assert.equal(await codeOf(h.services.policies.get(h.ctx, 99)), 'POLICY_VERSION_NOT_FOUND');
  });

  test('an editor working from an old version cannot silently replace a newer one (cas), over the service and HTTP', async () => {
    const inForce = (await h.services.policies.current(h.ctx)).version;
    const versions = async () => (await h.services.policies.history(h.ctx)).length;
    const before = await versions();
    assert.equal(await codeOf(h.services.policies.put(h.ctx, { text: EXAMPLE, cas: inForce - 1 })), 'CAS_MISMATCH');
    assert.equal(await codeOf(h.services.policies.rollback(h.ctx, 1, inForce + 1)), 'CAS_MISMATCH');
    assert.equal(await versions(), before, 'no version was written');
    assert.equal((await h.services.policies.current(h.ctx)).version, inForce);
    const res = await h.app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { text: EXAMPLE, cas: inForce - 1 } });
    assert.deepEqual([res.statusCode, res.json().error.code], [409, 'CAS_MISMATCH']);
    const next = await h.services.policies.put(h.ctx, { text: EXAMPLE, comment: 'from the version in force', cas: inForce });
    assert.equal(next.version, inForce + 1);
    // Two editors from the same version: one lands, the other is told.
    const raced = await Promise.all([1, 2].map((i) => codeOf(h.services.policies.put(h.ctx, { text: `// editor ${i}\n${EXAMPLE}`, cas: next.version }))));
    assert.deepEqual(raced.sort(), ['CAS_MISMATCH', 'ok']);
    assert.equal(await versions(), before + 2);
  });

  test('cas holds when another editor commits between the check and the write (PostgreSQL, read committed)', { skip: dialect !== 'postgres' && 'SQLite runs one transaction at a time' }, async () => {
    const inForce = (await h.services.policies.current(h.ctx)).version;
    // The other editor lands right after this editor's transaction has read the version in force.
    const pause = pauseAfterRead('tenants', async () => {
      await h.services.policies.put(h.ctx, { text: `// the other editor\n${EXAMPLE}`, cas: inForce });
    });
    const { engine, authz, audit } = h.services;
    const editor = createPolicyService({ db: h.storage.db.withPlugin(pause), engine, authz, clock: h.clock, audit, maskText: async (_tenant, text) => text });
    assert.equal(await codeOf(editor.put(h.ctx, { text: `// this editor, from ${inForce}\n${EXAMPLE}`, cas: inForce })), 'CAS_MISMATCH');
    assert.ok(pause.fired());
    const now = await h.services.policies.current(h.ctx);
    assert.deepEqual([now.version, now.text.split('\n')[0]], [inForce + 1, '// the other editor'], 'the newer version stays in force');
    assert.equal((await h.services.policies.history(h.ctx)).length, inForce + 1, 'nothing of the refused edit was written');
  });

  test('a version number past what versions can be is refused alike on every route and dialect (400, never a lookup)', async () => {
    for (const url of ['/v1/policies/versions/2147483648', '/v1/policies/diff?from=0&to=2147483648', '/v1/policies/diff?from=99999999999&to=0']) {
      const res = await h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${h.rootToken}` } });
      assert.deepEqual([res.statusCode, res.json().error.code], [400, 'VALIDATION_FAILED'], `${url}: ${res.body}`);
      assert.match(res.json().error.message, /querystring|params/, url);
    }
  });

  test('only administrators with a fresh factor manage policies', async () => {
    assert.equal(await codeOf(h.services.policies.put(revealer.ctx(), { text: '' })), 'FORBIDDEN');
    const admin = await userContext(h, h.ctx.tenantId, 'adm', { mfaAgoMs: 3_600_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: admin.id, role: 'tenant-admin' });
    assert.equal(await codeOf(h.services.policies.put(admin.ctx(), { text: '' })), 'STEP_UP_REQUIRED');
  });
});

describeEachDialect('a tenant policy that asks for a recent factor: the answer says when stepping up helps', (dialect) => {
  test('a version in force that stops validating (an upgrade changed the schema) refuses with a stable 503 until root repairs it', async () => {
    const h = await createHarness(dialect);
    try {
      await h.services.secrets.create(h.ctx, { name: 'PROD_KEY', owner: 'ops' });
      const reader = await userContext(h, h.ctx.tenantId, 'reader');
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: reader.id, role: 'viewer' });
      const v1 = await h.services.policies.put(h.ctx, { text: EXAMPLE });
      const v2 = await h.services.policies.put(h.ctx, { text: `${EXAMPLE}\n// v2` });
      // As if this server's schema no longer had what version 2 reads (stored text changed by hand for the test).
      await h.storage.db.updateTable('tenant_policies').set({ text: 'permit (principal, action, resource) when { context.removedInUpgrade };' })
        .where('tenant_id', '=', h.ctx.tenantId).where('version', '=', v2.version).execute();
      await h.storage.db.updateTable('tenants').set((eb) => ({ authz_generation: eb('authz_generation', '+', 1) })).where('id', '=', h.ctx.tenantId).execute();
      h.services.authz.invalidate(h.ctx.tenantId);
      assert.equal(await codeOf(h.services.secrets.list(reader.ctx(), {})), 'POLICY_UNUSABLE');
      const session = await h.services.sessions.issue({ id: reader.id, tenantId: h.ctx.tenantId }, null);
      const res = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${session.token}` } });
      assert.deepEqual([res.statusCode, res.json().error.code], [503, 'POLICY_UNUSABLE']);
      assert.match(res.json().error.message, /root/);
      // Root is decided by the built-ins alone, so it can put the tenant back on a version that loads.
      await h.services.policies.rollback(h.ctx, v1.version);
      assert.equal(await codeOf(h.services.secrets.list(reader.ctx(), {})), 'ok');
    } finally {
      await h.close();
    }
  });

  test('a stale factor meeting a tenant rule on its age is STEP_UP_REQUIRED, since a step-up now satisfies both', async () => {
    const h = await createHarness(dialect);
    try {
      await h.services.secrets.create(h.ctx, { name: 'PROD_KEY', owner: 'ops' });
      await h.services.values.write(h.ctx, 'PROD_KEY', 'production', { value: 'prod-value' });
      await h.services.policies.put(h.ctx, { text: EXAMPLE, comment: 'production reveals need a factor from the last 5 minutes' });
      // 11 minutes: past the step-up window and the tenant's 5 minutes. A step-up makes the factor 0 seconds old.
      const stale = await userContext(h, h.ctx.tenantId, 'stale', { mfaAgoMs: 11 * 60_000 });
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: stale.id, role: 'revealer' });
      assert.equal(await codeOf(h.services.values.read(stale.ctx(), 'PROD_KEY', 'production')), 'STEP_UP_REQUIRED');
      const steppedUp = await userContext(h, h.ctx.tenantId, 'stepped-up', { mfaAgoMs: 0 });
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: steppedUp.id, role: 'revealer' });
      assert.equal(await codeOf(h.services.values.read(steppedUp.ctx(), 'PROD_KEY', 'production')), 'ok', 'what the answer promised');
      // Where a step-up would not help (a builder never reveals), the answer stays FORBIDDEN.
      const builder = await userContext(h, h.ctx.tenantId, 'builder', { mfaAgoMs: 11 * 60_000 });
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: builder.id, role: 'builder' });
      assert.equal(await codeOf(h.services.values.read(builder.ctx(), 'PROD_KEY', 'production')), 'FORBIDDEN');
    } finally {
      await h.close();
    }
  });
});
