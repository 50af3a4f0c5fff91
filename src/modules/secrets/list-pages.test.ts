import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import type { TenantContext } from '../shared/context.ts';
import { rejects } from '../../../test/helpers/rejects.ts';

describeEachDialect('secret listing pages', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
  });
  after(() => h.close());

  test('listing page by page never names a secret the caller may not list, not even as the next-page cursor, and misses none it may', async () => {
    for (const name of ['PAGED_A1', 'PAGED_B_HIDDEN1', 'PAGED_B_HIDDEN2', 'PAGED_B_HIDDEN3', 'PAGED_C2', 'PAGED_D_HIDDEN4', 'PAGED_E3']) {
      await h.services.secrets.create(ctx, { name, owner: 'ops' });
    }
    const narrow = await userContext(h, ctx.tenantId, 'nora-narrow-viewer');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: narrow.id, role: 'viewer', namePatterns: ['PAGED_A*', 'PAGED_C*', 'PAGED_E*'] });
    for (const limit of [1, 2, 3, 100]) {
      const seen: string[] = [];
      const cursors: string[] = [];
      let after: string | undefined;
      for (let pages = 0; pages < 20; pages++) {
        const page = await h.services.secrets.list(narrow.ctx(), { prefix: 'PAGED_', limit, ...(after ? { after } : {}) });
        seen.push(...page.items.map((s) => s.name));
        if (page.next === null) break;
        cursors.push(page.next);
        after = page.next;
      }
      assert.deepEqual(seen, ['PAGED_A1', 'PAGED_C2', 'PAGED_E3'], `limit ${limit}: every listable secret once, in order`);
      assert.equal(JSON.stringify(cursors).includes('HIDDEN'), false, `limit ${limit}: no cursor names a hidden secret: ${cursors.join(' ')}`);
    }
    // A secret created while a caller pages through is listed on a later page, and nothing is listed twice.
    const first = await h.services.secrets.list(ctx, { prefix: 'PAGED_', limit: 2 });
    await h.services.secrets.create(ctx, { name: 'PAGED_Z_LATE', owner: 'ops' });
    await h.services.secrets.create(ctx, { name: 'PAGED_0_EARLY', owner: 'ops' });
    const rest = await h.services.secrets.list(ctx, { prefix: 'PAGED_', after: first.next!, limit: 100 });
    assert.deepEqual([...first.items, ...rest.items].map((s) => s.name),
      ['PAGED_A1', 'PAGED_B_HIDDEN1', 'PAGED_B_HIDDEN2', 'PAGED_B_HIDDEN3', 'PAGED_C2', 'PAGED_D_HIDDEN4', 'PAGED_E3', 'PAGED_Z_LATE']);
  });

  test('a tenant lists only its own secrets, live or deleted, though another tenant has secrets under the same prefix', async () => {
    const other = await h.services.tenants.create('list-other');
    const theirs = h.contextFor(other.id);
    await h.services.secrets.create(theirs, { name: 'TENANTED_THEIRS', owner: 'ops' });
    await h.services.secrets.create(theirs, { name: 'TENANTED_THEIRS_GONE', owner: 'ops' });
    await h.services.secrets.remove(theirs, 'TENANTED_THEIRS_GONE');
    await h.services.secrets.create(ctx, { name: 'TENANTED_MINE', owner: 'ops' });
    for (const includeDeleted of [false, true]) {
      const mine = await h.services.secrets.list(ctx, { prefix: 'TENANTED_', limit: 100, includeDeleted });
      assert.deepEqual(mine.items.map((s) => s.name), ['TENANTED_MINE'], `includeDeleted ${includeDeleted}`);
    }
    assert.deepEqual((await h.services.secrets.list(theirs, { prefix: 'TENANTED_', limit: 100 })).items.map((s) => s.name), ['TENANTED_THEIRS']);
  });

  test('a page that ends on a run of secrets the caller may not list resumes from a sealed cursor, which names none of them and opens only here', async () => {
    const hidden = Array.from({ length: 2100 }, (_, i) => `SCAN_H${String(i).padStart(4, '0')}`);
    const row = (name: string) => ({
      id: randomUUID(), tenant_id: ctx.tenantId, name, label: name, owner: 'ops', purpose: '', classification: 'internal', tags: '[]',
      expires_at: null, created_at: h.clock.now(), created_by: ctx.actor.id, updated_at: h.clock.now(), deleted_at: null, revision: 1,
    });
    for (let i = 0; i < hidden.length; i += 500) await h.storage.db.insertInto('secrets').values(hidden.slice(i, i + 500).map(row)).execute();
    await h.services.secrets.create(ctx, { name: 'SCAN_A_FIRST', owner: 'ops' });
    await h.services.secrets.create(ctx, { name: 'SCAN_V_LAST', owner: 'ops' });
    const narrow = await userContext(h, ctx.tenantId, 'sven-scan-viewer');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: narrow.id, role: 'viewer', namePatterns: ['SCAN_A*', 'SCAN_V*'] });

    const first = await h.services.secrets.list(narrow.ctx(), { prefix: 'SCAN_', limit: 5 });
    assert.deepEqual(first.items.map((s) => s.name), ['SCAN_A_FIRST'], 'a partial page: the scan stopped among hidden secrets');
    assert.ok(first.next !== null && first.next.startsWith('~') && !first.next.includes('SCAN'), `an opaque cursor: ${first.next}`);
    const second = await h.services.secrets.list(narrow.ctx(), { prefix: 'SCAN_', limit: 5, after: first.next });
    assert.deepEqual([second.items.map((s) => s.name), second.next], [['SCAN_V_LAST'], null]);

    // Over HTTP too: the cursor fits `after` (even for the longest name) and resumes where the scan stopped.
    assert.ok(h.services.cursors.seal(ctx.tenantId, 'N'.repeat(128)).length <= 256);
    const res = await h.app.inject({ method: 'GET', url: `/v1/secrets?prefix=SCAN_&limit=1&after=${first.next}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 200, res.body);
    assert.match((res.json() as { items: Array<{ name: string }> }).items[0]!.name, /^SCAN_H19\d\d$/);
    const other = await h.services.tenants.create('cursor-other');
    await rejects(h.services.secrets.list({ ...ctx, tenantId: other.id }, { after: first.next }), 'VALIDATION_FAILED');
    const flipped = first.next.slice(0, 10) + (first.next[10] === 'A' ? 'B' : 'A') + first.next.slice(11);
    await rejects(h.services.secrets.list(narrow.ctx(), { after: flipped }), 'VALIDATION_FAILED');
    await rejects(h.services.secrets.list(narrow.ctx(), { after: '~' }), 'VALIDATION_FAILED');
    // A plain name still lists after it, as before.
    assert.deepEqual((await h.services.secrets.list(ctx, { prefix: 'SCAN_', after: 'SCAN_H2099', limit: 5 })).items.map((s) => s.name), ['SCAN_V_LAST']);
  });
});
