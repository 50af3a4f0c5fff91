import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, ROLLBACK_WINDOW_MS, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import type { TenantContext } from '../shared/context.ts';
import { createSecretService } from './secret-service.ts';
import { rejects } from '../../../test/helpers/rejects.ts';

describeEachDialect('secrets and versions', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
  });
  after(() => h.close());

  test('a secret needs a valid name and an owner, and names are unique per tenant', async () => {
    const meta = await h.services.secrets.create(ctx, { name: 'PAYMENT_API_KEY', owner: 'payments-team', tags: ['stripe', 'stripe'] });
    assert.equal(meta.classification, 'internal');
    assert.deepEqual(meta.tags, ['stripe']);
    await rejects(h.services.secrets.create(ctx, { name: 'PAYMENT_API_KEY', owner: 'x' }), 'SECRET_EXISTS');
    for (const bad of ['', '1ABC', 'has space', 'a/b', 'x'.repeat(129), "quote'"]) {
      await rejects(h.services.secrets.create(ctx, { name: bad, owner: 'x' }), 'INVALID_NAME');
    }
  });

  test('metadata and a write\'s reason holding terminal escapes, line breaks or direction overrides are refused and nothing is written (they are shown as one line in listings)', async () => {
    await h.services.secrets.create(ctx, { name: 'HOSTILE_META', owner: 'ops', label: 'Hostile meta', purpose: 'billing', tags: ['ok'] });
    await h.services.values.write(ctx, 'HOSTILE_META', 'production', { value: 'v1', reason: 'first' });
    const hostile = ['ops\u001b[1A\u001b[2K', 'ops\nFAKE_KEY  ops  public', 'ops\r', 'ops\u202eevil', 'ops\u2028line', 'bell\u0007'];
    for (const text of hostile) {
      for (const field of ['owner', 'label', 'purpose', 'tags'] as const) {
        const patch = field === 'tags' ? { tags: ['ok', text] } : { [field]: text };
        await rejects(h.services.secrets.create(ctx, { name: 'HOSTILE_NEW', owner: 'ops', ...patch }), 'VALIDATION_FAILED');
        await rejects(h.services.secrets.update(ctx, 'HOSTILE_META', patch), 'VALIDATION_FAILED');
      }
      await rejects(h.services.values.write(ctx, 'HOSTILE_META', 'production', { value: 'v2', reason: text }), 'VALIDATION_FAILED');
    }
    await rejects(h.services.secrets.describe(ctx, 'HOSTILE_NEW'), 'SECRET_NOT_FOUND');
    const meta = await h.services.secrets.describe(ctx, 'HOSTILE_META');
    assert.deepEqual([meta.owner, meta.label, meta.purpose, meta.tags, meta.revision], ['ops', 'Hostile meta', 'billing', ['ok'], 1]);
    assert.deepEqual((await h.services.values.history(ctx, 'HOSTILE_META', 'production')).map((v) => v.reason), ['first']);
    // Ordinary text, accents and emoji included, is untouched.
    const fine = await h.services.secrets.update(ctx, 'HOSTILE_META', { owner: 'équipe paiements 💳', purpose: 'Tab\u00a0and non-ASCII: ß, 日本' });
    assert.equal(fine.owner, 'équipe paiements 💳');
  });

  test('an owner or label that shows nothing, and a tag that prints like another (invisible characters, padding, decomposed accents), are refused or made the one tag they look like', async () => {
    const m = await h.services.secrets.create(ctx, { name: 'LOOKALIKE_META', owner: 'ops', tags: ['pci'] });
    for (const owner of ['   ', '\u200b', '\u2060\u00ad']) {
      await rejects(h.services.secrets.create(ctx, { name: 'BLANK_OWNER', owner }), 'VALIDATION_FAILED');
      await rejects(h.services.secrets.update(ctx, 'LOOKALIKE_META', { owner }), 'VALIDATION_FAILED');
      await rejects(h.services.secrets.update(ctx, 'LOOKALIKE_META', { label: owner }), 'VALIDATION_FAILED');
    }
    // A policy on the tag "pci" must see every tag a reader sees as "pci".
    for (const tag of ['pci\u200b', '\u2060pci', 'p\u00adci', ' pci', 'pci ', '\ufeffpci']) {
      await rejects(h.services.secrets.create(ctx, { name: 'LOOKALIKE_TAG', owner: 'ops', tags: [tag] }), 'VALIDATION_FAILED');
      await rejects(h.services.secrets.update(ctx, 'LOOKALIKE_META', { tags: ['pci', tag] }), 'VALIDATION_FAILED');
    }
    await rejects(h.services.secrets.describe(ctx, 'BLANK_OWNER'), 'SECRET_NOT_FOUND');
    await rejects(h.services.secrets.describe(ctx, 'LOOKALIKE_TAG'), 'SECRET_NOT_FOUND');
    assert.equal((await h.services.secrets.describe(ctx, 'LOOKALIKE_META')).revision, m.revision, 'nothing of a refused update was written');
    // Composed and decomposed accents print alike: both are stored composed (NFC), so they are one tag and one owner.
    const nfd = await h.services.secrets.update(ctx, 'LOOKALIKE_META', { owner: 'e\u0301quipe', tags: ['caf\u00e9', 'cafe\u0301'] });
    assert.deepEqual([nfd.owner, nfd.tags], ['\u00e9quipe', ['caf\u00e9']]);
    assert.deepEqual((await h.services.secrets.describe(ctx, 'LOOKALIKE_META')).tags, ['caf\u00e9']);
  });

  test('writes create immutable versions; current and previous move together', async () => {
    await h.services.secrets.create(ctx, { name: 'DB_PASSWORD', owner: 'data' });
    const v1 = await h.services.values.write(ctx, 'DB_PASSWORD', 'production', { value: 'pw-one', reason: 'initial' });
    const v2 = await h.services.values.write(ctx, 'DB_PASSWORD', 'production', { value: 'pw-two' });
    assert.deepEqual([v1.version, v2.version, v2.previousVersion], [1, 2, 1]);
    assert.equal((await h.services.values.read(ctx, 'DB_PASSWORD', 'production')).value, 'pw-two');
    assert.equal((await h.services.values.read(ctx, 'DB_PASSWORD', 'production', { label: 'previous' })).value, 'pw-one');
    assert.equal((await h.services.values.read(ctx, 'DB_PASSWORD', 'production', { version: 1 })).value, 'pw-one');
    const history = await h.services.values.history(ctx, 'DB_PASSWORD', 'production');
    assert.deepEqual(history.map((v) => [v.version, v.labels]), [[2, ['current']], [1, ['previous']]]);
    assert.equal(history[1]!.reason, 'initial');
  });

  test('a read naming both a version and a label is refused, not answered with one of them', async () => {
    await h.services.secrets.create(ctx, { name: 'BOTH_SELECTORS', owner: 'ops' });
    await h.services.values.write(ctx, 'BOTH_SELECTORS', 'production', { value: 'one' });
    await h.services.values.write(ctx, 'BOTH_SELECTORS', 'production', { value: 'two' });
    await rejects(h.services.values.read(ctx, 'BOTH_SELECTORS', 'production', { version: 1, label: 'current' }), 'VALIDATION_FAILED');
    const res = await h.app.inject({ method: 'GET', url: '/v1/secrets/BOTH_SELECTORS/values/production?version=1&label=current', headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.body.includes('one') || res.body.includes('two'), false);
  });

  test('a value pasted into a write\'s reason, the tenant\'s or the one being written, is masked before it is stored, audited or shown', async () => {
    await h.services.secrets.create(ctx, { name: 'REASON_OTHER', owner: 'ops' });
    await h.services.secrets.create(ctx, { name: 'REASON_NEW', owner: 'ops' });
    const other = 'other-secret-value-8f2k1';
    const written = 'brand-new-value-q7x9z';
    await h.services.values.write(ctx, 'REASON_OTHER', 'production', { value: other });
    await h.services.values.write(ctx, 'REASON_NEW', 'production', { value: written, reason: `copied ${other}, set to ${written}` });
    const [shown] = await h.services.values.history(ctx, 'REASON_NEW', 'production');
    assert.equal(shown!.reason.includes(other) || shown!.reason.includes(written), false, shown!.reason);
    assert.match(shown!.reason, /^copied \[REDACTED\], set to \[REDACTED\]$/);
    const db = h.storage.db;
    const stored = JSON.stringify([
      await db.selectFrom('secret_versions').select('reason').execute(),
      await db.selectFrom('audit_events').select(['context', 'reason', 'resource_name']).execute(),
    ]);
    assert.equal(stored.includes(other) || stored.includes(written), false, 'no row and no audit event holds a value');
  });

  test('the same name resolves to a different value in each environment, and never across', async () => {
    await h.services.secrets.create(ctx, { name: 'ENV_SCOPED', owner: 'ops' });
    await h.services.values.write(ctx, 'ENV_SCOPED', 'production', { value: 'prod-value' });
    await h.services.values.write(ctx, 'ENV_SCOPED', 'staging', { value: 'staging-value' });
    assert.equal((await h.services.values.read(ctx, 'ENV_SCOPED', 'staging')).value, 'staging-value');
    assert.equal((await h.services.values.read(ctx, 'ENV_SCOPED', 'production')).value, 'prod-value');
    await rejects(h.services.values.read(ctx, 'ENV_SCOPED', 'development'), 'VALUE_NOT_SET');
    await rejects(h.services.values.read(ctx, 'ENV_SCOPED', 'prod'), 'ENVIRONMENT_NOT_FOUND');
  });

  test('check-and-set: a stale expected version is refused and nothing is written', async () => {
    await h.services.secrets.create(ctx, { name: 'CAS_KEY', owner: 'ops' });
    await h.services.values.write(ctx, 'CAS_KEY', 'production', { value: 'a', cas: 0 });
    await rejects(h.services.values.write(ctx, 'CAS_KEY', 'production', { value: 'b', cas: 0 }), 'CAS_MISMATCH');
    await rejects(h.services.values.write(ctx, 'CAS_KEY', 'production', { value: 'b', cas: 7 }), 'CAS_MISMATCH');
    const ok = await h.services.values.write(ctx, 'CAS_KEY', 'production', { value: 'b', cas: 1 });
    assert.equal(ok.version, 2);
    assert.equal((await h.services.values.history(ctx, 'CAS_KEY', 'production')).length, 2);
  });

  test('two writers racing with the same CAS version: exactly one wins', async () => {
    await h.services.secrets.create(ctx, { name: 'RACE_KEY', owner: 'ops' });
    await h.services.values.write(ctx, 'RACE_KEY', 'production', { value: 'base' });
    for (let round = 0; round < 5; round++) {
      const current = (await h.services.values.read(ctx, 'RACE_KEY', 'production')).version;
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => h.services.values.write(ctx, 'RACE_KEY', 'production', { value: `w${round}-${i}`, cas: current })),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
      assert.equal(won.length, 1, `round ${round}: exactly one writer wins`);
      for (const l of lost) assert.equal((l.reason as { code: string }).code, 'CAS_MISMATCH');
    }
  });

  test('concurrent writers without CAS each get their own version, none lost', async () => {
    await h.services.secrets.create(ctx, { name: 'BURST_KEY', owner: 'ops' });
    const writes = await Promise.all(Array.from({ length: 20 }, (_, i) => h.services.values.write(ctx, 'BURST_KEY', 'staging', { value: `v-${i}` })));
    assert.deepEqual(writes.map((w) => w.version).sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i + 1));
    for (const w of writes) {
      const sent = `v-${writes.indexOf(w)}`;
      assert.equal((await h.services.values.read(ctx, 'BURST_KEY', 'staging', { version: w.version })).value, sent);
    }
  });

  test('rollback makes previous current again, only within the rollback window', async () => {
    await h.services.secrets.create(ctx, { name: 'ROLL_KEY', owner: 'ops' });
    await h.services.values.write(ctx, 'ROLL_KEY', 'production', { value: 'old' });
    await h.services.values.write(ctx, 'ROLL_KEY', 'production', { value: 'new' });
    const rolled = await h.services.values.rollback(ctx, 'ROLL_KEY', 'production', { cas: 2 });
    assert.deepEqual([rolled.version, rolled.previousVersion], [1, 2]);
    assert.equal((await h.services.values.read(ctx, 'ROLL_KEY', 'production')).value, 'old');
    await rejects(h.services.values.rollback(ctx, 'ROLL_KEY', 'production', { cas: 2 }), 'CAS_MISMATCH');
    h.clock.advance(ROLLBACK_WINDOW_MS + 1000);
    await rejects(h.services.values.rollback(ctx, 'ROLL_KEY', 'production'), 'NO_PREVIOUS_VERSION');
    await rejects(h.services.values.rollback(ctx, 'ROLL_KEY', 'staging'), 'VALUE_NOT_SET');
  });

  test('superseded versions are crypto-shredded after the rollback window; current never is', async () => {
    await h.services.retention.sweep(); // earlier tests moved the clock; start from a clean slate
    await h.services.secrets.create(ctx, { name: 'SHRED_KEY', owner: 'ops' });
    for (const v of ['s1', 's2', 's3']) await h.services.values.write(ctx, 'SHRED_KEY', 'production', { value: v });
    assert.equal(await h.services.retention.sweep(), 0, 'nothing is past the window yet');
    h.clock.advance(ROLLBACK_WINDOW_MS + 1);
    assert.ok((await h.services.retention.sweep()) >= 2);
    await rejects(h.services.values.read(ctx, 'SHRED_KEY', 'production', { version: 1 }), 'VERSION_DESTROYED');
    await rejects(h.services.values.read(ctx, 'SHRED_KEY', 'production', { label: 'previous' }), 'VERSION_NOT_FOUND');
    assert.equal((await h.services.values.read(ctx, 'SHRED_KEY', 'production')).value, 's3');
    const rows = await h.storage.db.selectFrom('secret_versions').innerJoin('secrets', 'secrets.id', 'secret_versions.secret_id')
      .select(['secret_versions.version', 'secret_versions.wrapped_dek', 'secret_versions.destroyed_at'])
      .where('secrets.name', '=', 'SHRED_KEY').orderBy('version').execute();
    assert.deepEqual(rows.map((r) => [r.version, r.wrapped_dek === null, r.destroyed_at !== null]), [[1, true, true], [2, true, true], [3, false, false]]);
  });

  test('soft delete hides a secret, restore brings it back with its values, destroy removes it for good', async () => {
    await h.services.secrets.create(ctx, { name: 'DEL_KEY', owner: 'ops' });
    await h.services.values.write(ctx, 'DEL_KEY', 'production', { value: 'keep-me' });
    await h.services.secrets.remove(ctx, 'DEL_KEY');
    await rejects(h.services.values.read(ctx, 'DEL_KEY', 'production'), 'SECRET_NOT_FOUND');
    await rejects(h.services.values.write(ctx, 'DEL_KEY', 'production', { value: 'x' }), 'SECRET_NOT_FOUND');
    assert.equal((await h.services.secrets.list(ctx)).items.some((s) => s.name === 'DEL_KEY'), false);
    assert.equal((await h.services.secrets.list(ctx, { includeDeleted: true })).items.some((s) => s.name === 'DEL_KEY'), true);
    await h.services.secrets.restore(ctx, 'DEL_KEY');
    assert.equal((await h.services.values.read(ctx, 'DEL_KEY', 'production')).value, 'keep-me');
    await rejects(h.services.secrets.destroy(ctx, 'DEL_KEY'), 'SECRET_NOT_DELETED');
    await h.services.secrets.remove(ctx, 'DEL_KEY');
    await h.services.secrets.destroy(ctx, 'DEL_KEY');
    await rejects(h.services.secrets.restore(ctx, 'DEL_KEY'), 'SECRET_NOT_FOUND');
    await h.services.secrets.create(ctx, { name: 'DEL_KEY', owner: 'ops' });
    await rejects(h.services.values.read(ctx, 'DEL_KEY', 'production'), 'VALUE_NOT_SET');
  });

  test('a secret deleted right after it was read is not served afterwards from what that read left in memory', async () => {
    await h.services.secrets.create(ctx, { name: 'DEL_CACHED', owner: 'ops' });
    await h.services.values.write(ctx, 'DEL_CACHED', 'production', { value: 'del-cached-1' });
    // Twice: the second read is answered from the cached row and data key.
    for (let i = 0; i < 2; i++) assert.equal((await h.services.values.read(ctx, 'DEL_CACHED', 'production')).value, 'del-cached-1');
    await h.services.secrets.remove(ctx, 'DEL_CACHED');
    await rejects(h.services.values.read(ctx, 'DEL_CACHED', 'production'), 'SECRET_NOT_FOUND');
  });

  test('destroying chosen versions shreds them but never the current one', async () => {
    await h.services.secrets.create(ctx, { name: 'PICK_KEY', owner: 'ops' });
    for (const v of ['p1', 'p2', 'p3']) await h.services.values.write(ctx, 'PICK_KEY', 'production', { value: v });
    await rejects(h.services.secrets.destroy(ctx, 'PICK_KEY', { environment: 'production', versions: [3] }), 'VALIDATION_FAILED');
    assert.deepEqual(await h.services.secrets.destroy(ctx, 'PICK_KEY', { environment: 'production', versions: [2] }), { destroyed: 1 });
    await rejects(h.services.values.read(ctx, 'PICK_KEY', 'production', { version: 2 }), 'VERSION_DESTROYED');
    await rejects(h.services.values.rollback(ctx, 'PICK_KEY', 'production'), 'NO_PREVIOUS_VERSION');
    assert.equal((await h.services.values.read(ctx, 'PICK_KEY', 'production', { version: 1 })).value, 'p1');
  });

  test('a version destroyed right after it was read is not served afterwards from what that read left in memory', async () => {
    await h.services.secrets.create(ctx, { name: 'SHRED_CACHED', owner: 'ops' });
    for (const v of ['shred-1', 'shred-2']) await h.services.values.write(ctx, 'SHRED_CACHED', 'production', { value: v });
    // Twice: the second read is answered from the cached row and data key.
    for (let i = 0; i < 2; i++) assert.equal((await h.services.values.read(ctx, 'SHRED_CACHED', 'production', { label: 'previous' })).value, 'shred-1');
    await h.services.secrets.destroy(ctx, 'SHRED_CACHED', { environment: 'production', versions: [1] });
    await rejects(h.services.values.read(ctx, 'SHRED_CACHED', 'production', { label: 'previous' }), 'VERSION_NOT_FOUND');
    await rejects(h.services.values.read(ctx, 'SHRED_CACHED', 'production', { version: 1 }), 'VERSION_DESTROYED');
  });

  test('destroy naming an environment but no versions is refused and destroys nothing, not widened into destroying the whole secret', async () => {
    await h.services.secrets.create(ctx, { name: 'NARROW_DESTROY', owner: 'ops' });
    await h.services.values.write(ctx, 'NARROW_DESTROY', 'production', { value: 'p1' });
    await h.services.values.write(ctx, 'NARROW_DESTROY', 'staging', { value: 's1' });
    await h.services.secrets.remove(ctx, 'NARROW_DESTROY');
    await rejects(h.services.secrets.destroy(ctx, 'NARROW_DESTROY', { environment: 'staging' }), 'VALIDATION_FAILED');
    await rejects(h.services.secrets.destroy(ctx, 'NARROW_DESTROY', { environment: 'staging', versions: [] }), 'VALIDATION_FAILED');
    const res = await h.app.inject({ method: 'POST', url: '/v1/secrets/NARROW_DESTROY/destroy', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { environment: 'staging' } });
    assert.equal(res.statusCode, 400, res.body);
    await h.services.secrets.restore(ctx, 'NARROW_DESTROY');
    assert.equal((await h.services.values.read(ctx, 'NARROW_DESTROY', 'production')).value, 'p1', 'the secret and its values are all still there');
  });

  test('values are bounded in size', async () => {
    await h.services.secrets.create(ctx, { name: 'BIG_KEY', owner: 'ops' });
    await h.services.values.write(ctx, 'BIG_KEY', 'production', { value: 'x'.repeat(65_536) });
    await rejects(h.services.values.write(ctx, 'BIG_KEY', 'production', { value: 'x'.repeat(65_537) }), 'VALUE_TOO_LARGE');
    await rejects(h.services.values.write(ctx, 'BIG_KEY', 'production', { value: 'é'.repeat(32_769) }), 'VALUE_TOO_LARGE');
    await rejects(h.services.values.write(ctx, 'BIG_KEY', 'production', { value: '' }), 'VALIDATION_FAILED');
    assert.equal((await h.services.values.history(ctx, 'BIG_KEY', 'production')).length, 1);
  });

  test('describe shows a secret\'s state only in the environments the caller may list there (narrowed grant or bound credential)', async () => {
    await h.services.secrets.create(ctx, { name: 'NARROW_DESCRIBE', owner: 'ops' });
    await h.services.values.write(ctx, 'NARROW_DESCRIBE', 'production', { value: 'prod-only-1' });
    await h.services.values.write(ctx, 'NARROW_DESCRIBE', 'production', { value: 'prod-only-2' });
    await h.services.values.write(ctx, 'NARROW_DESCRIBE', 'staging', { value: 'staging-1' });
    const stager = await userContext(h, ctx.tenantId, 'stella-staging-viewer');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: stager.id, role: 'viewer', environments: ['staging'] });
    await rejects(h.services.values.history(stager.ctx(), 'NARROW_DESCRIBE', 'production'), 'SECRET_NOT_FOUND');
    const seen = await h.services.secrets.describe(stager.ctx(), 'NARROW_DESCRIBE');
    assert.deepEqual(seen.environments.map((e) => [e.environment, e.currentVersion]), [['staging', 1]], 'nothing of production');
    const bound: TenantContext = { ...ctx, actor: { ...ctx.actor, boundEnvironment: 'staging' } };
    assert.deepEqual((await h.services.secrets.describe(bound, 'NARROW_DESCRIBE')).environments.map((e) => e.environment), ['staging']);
    assert.deepEqual((await h.services.secrets.describe(ctx, 'NARROW_DESCRIBE')).environments.map((e) => e.environment), ['production', 'staging']);
  });

  test('metadata updates are guarded by revision', async () => {
    const m = await h.services.secrets.create(ctx, { name: 'META_KEY', owner: 'ops' });
    const u = await h.services.secrets.update(ctx, 'META_KEY', { owner: 'security', classification: 'restricted', revision: m.revision });
    assert.deepEqual([u.owner, u.classification, u.revision], ['security', 'restricted', 2]);
    await rejects(h.services.secrets.update(ctx, 'META_KEY', { owner: 'x', revision: 1 }), 'CAS_MISMATCH');
  });

  test('a secret admin may raise a classification; lowering it also needs tenant admin (approval rules and policies key on it)', async () => {
    const admin = await userContext(h, ctx.tenantId, 'sam-secret-admin');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: admin.id, role: 'secret-admin' });
    const owner = await userContext(h, ctx.tenantId, 'tina-tenant-admin');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: owner.id, role: 'tenant-admin' });
    await h.services.grants.create(ctx, { principalType: 'user', principalId: owner.id, role: 'secret-admin' });
    const m = await h.services.secrets.create(ctx, { name: 'CLASSIFIED_KEY', owner: 'ops', classification: 'confidential' });
    const up = await h.services.secrets.update(admin.ctx(), 'CLASSIFIED_KEY', { classification: 'restricted', revision: m.revision });
    assert.equal(up.classification, 'restricted');
    await rejects(h.services.secrets.update(admin.ctx(), 'CLASSIFIED_KEY', { classification: 'internal' }), 'FORBIDDEN');
    await rejects(h.services.secrets.update(admin.ctx(), 'CLASSIFIED_KEY', { classification: 'public', owner: 'sneaky' }), 'FORBIDDEN');
    const unchanged = await h.services.secrets.describe(ctx, 'CLASSIFIED_KEY');
    assert.deepEqual([unchanged.classification, unchanged.owner, unchanged.revision], ['restricted', 'ops', up.revision], 'nothing of a refused update was written');
    const down = await h.services.secrets.update(owner.ctx(), 'CLASSIFIED_KEY', { classification: 'internal' });
    assert.equal(down.classification, 'internal');
    const denials = await h.storage.db.selectFrom('audit_events').select(['actor_id', 'outcome']).where('action', '=', 'authz.admin').where('actor_id', '=', admin.id).execute();
    assert.ok(denials.length >= 2 && denials.every((e) => e.outcome === 'denied'), 'each refusal is a recorded denial');
  });

  test('a classification judged on a row that changed before the write is not written (a concurrent raise is not silently lowered)', async () => {
    const writer = await userContext(h, ctx.tenantId, 'sid-secret-admin');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: writer.id, role: 'secret-admin' });
    await h.services.secrets.create(ctx, { name: 'RACED_CLASS_KEY', owner: 'ops', classification: 'internal' });
    // A tenant admin raises the classification right after the writer's update has read the secret.
    const pause = pauseAfterRead('secrets', async () => {
      await h.services.secrets.update(ctx, 'RACED_CLASS_KEY', { classification: 'restricted' });
    });
    const { tenants, authz, keyring, rows, audit, identifiers, cursors } = h.services;
    const secrets = createSecretService({ db: h.storage.db.withPlugin(pause), tenants, authz, clock: h.clock, keyring, rows, audit, identifiers, cursors, maxNameLength: 128 });
    // A form that sends the classification it showed, unchanged, beside the field it edits.
    await rejects(secrets.update(writer.ctx(), 'RACED_CLASS_KEY', { owner: 'team-b', classification: 'internal' }), 'CAS_MISMATCH');
    assert.ok(pause.fired());
    const now = await h.services.secrets.describe(ctx, 'RACED_CLASS_KEY');
    assert.deepEqual([now.classification, now.owner], ['restricted', 'ops'], 'a secret-admin did not lower it, and nothing of the refused update was written');
  });

  test('a classification raised right after a read decides the next read, not the classification that read left in memory', async () => {
    await h.services.secrets.create(ctx, { name: 'RECLASSIFIED', owner: 'ops', classification: 'confidential' });
    await h.services.values.write(ctx, 'RECLASSIFIED', 'production', { value: 'reclassified-1' });
    const reader = await userContext(h, ctx.tenantId, 'rita-revealer');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: reader.id, role: 'revealer' });
    await userContext(h, ctx.tenantId, 'lee-lead');
    const policies = h.services.escrow.accessPolicies;
    await policies.put(ctx, { comment: 'restricted needs approval', document: {
      groups: { leads: ['lee-lead'] },
      rules: [{ id: 'restricted-reveal', classifications: ['restricted'], environments: ['production'], actions: ['reveal'], steps: [{ groups: ['leads'], approvals: 1 }] }],
    } });
    try {
      // Twice: the second read is answered from the cached row and the remembered allow.
      for (let i = 0; i < 2; i++) assert.equal((await h.services.values.read(reader.ctx(), 'RECLASSIFIED', 'production')).value, 'reclassified-1');
      await h.services.secrets.update(ctx, 'RECLASSIFIED', { classification: 'restricted' });
      await rejects(h.services.values.read(reader.ctx(), 'RECLASSIFIED', 'production'), 'APPROVAL_REQUIRED');
    } finally {
      await policies.put(ctx, { comment: 'back to none', document: { groups: {}, rules: [] } });
    }
  });
});
