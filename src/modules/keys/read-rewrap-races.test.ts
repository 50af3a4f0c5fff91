import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { pauseAfterColumn } from '../../../test/helpers/pause-after-column.ts';
import { createHarness, ROLLBACK_WINDOW_MS, TEST_LIMITS, type Harness } from '../../../test/helpers/harness.ts';
import { createValueService } from '../secrets/value-service.ts';
import { createSealedRowCache } from '../secrets/sealed-row-cache.ts';
import { createPendingVersions } from '../secrets/pending-versions.ts';
import { createKeyService } from './key-service.ts';

/**
 * A read holds a sealed row (just loaded, or from the sealed-row cache) whose data key is wrapped
 * under the KEK version a concurrent rewrap is about to retire. The row in the database now holds the
 * same data key under the new version: the read opens that, instead of answering 500
 * KEY_VERSION_RETIRED, which stays for a row really left under a retired version.
 */
describeEachDialect('a read racing a rotate and rewrap', (dialect) => {
  let h: Harness;
  let expected = '';
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'READ_RACED', owner: 'ops' });
  });
  after(() => h.close());

  /** A new current value, under the current KEK; the next rotate and rewrap move it. */
  const writeValue = async () => {
    expected = `raced-${Math.random().toString(36).slice(2)}`;
    return (await h.services.values.write(h.ctx, 'READ_RACED', 'production', { value: expected })).version;
  };
  const rotateAndRewrap = async () => {
    await h.services.keys.rotate(h.ctx);
    await h.services.keys.rewrap(h.ctx);
  };
  /** A value service of its own (empty row cache) whose first sealed-row load lets a rotate and rewrap commit. */
  const racedValues = () => {
    const pause = pauseAfterColumn('wrapped_dek', rotateAndRewrap);
    const { keyring, tenants, secrets, authz, audit } = h.services;
    const values = createValueService({
      db: h.storage.db.withPlugin(pause), keyring, tenants, secrets, authz, audit, clock: h.clock,
      rows: createSealedRowCache({ clock: h.clock, ttlMs: 1_000, maxEntries: 100 }),
      maxValueBytes: TEST_LIMITS.maxValueBytes, rollbackWindowMs: ROLLBACK_WINDOW_MS,
    });
    return { values, pause };
  };
  const failedReads = async () => (await h.storage.db.selectFrom('audit_events').select('id')
    .where('tenant_id', '=', h.ctx.tenantId).where('outcome', '=', 'failed').where('action', 'in', ['secret.reveal', 'secret.use']).execute()).length;

  test('a labelled read that loaded its row just before the rewrap retired its KEK returns the value', async () => {
    await writeValue();
    const { values, pause } = racedValues();
    const read = await values.read(h.ctx, 'READ_RACED', 'production');
    assert.ok(pause.fired());
    assert.equal(read.value, expected);
    assert.equal(await failedReads(), 0, 'nothing failed');
  });

  test('a read by version number that loaded its row just before the rewrap retired its KEK returns the value', async () => {
    const version = await writeValue();
    const { values, pause } = racedValues();
    const read = await values.read(h.ctx, 'READ_RACED', 'production', { version });
    assert.ok(pause.fired());
    assert.deepEqual([read.version, read.value], [version, expected]);
    assert.equal(await failedReads(), 0, 'nothing failed');
  });

  test("a read served from this node's cached row after another node's rewrap retired its KEK returns the value, and forgets the stale row", async () => {
    await writeValue();
    assert.equal((await h.services.values.read(h.ctx, 'READ_RACED', 'production')).value, expected); // the row is cached here
    // Another node rotates and rewraps: this node's row cache is not told; its key state is read again (its lifetime is up).
    const otherNode = createKeyService({
      db: h.storage.db, keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, audit: h.services.audit, rows: { forgetTenant: () => {} },
    });
    await otherNode.rotate(h.ctx);
    await otherNode.rewrap(h.ctx);
    assert.equal((await h.services.values.read(h.ctx, 'READ_RACED', 'production')).value, expected);
    const env = await h.services.tenants.environment(h.ctx.tenantId, 'production');
    assert.equal(h.services.rows.get(h.ctx.tenantId, env.id, 'READ_RACED', 'current'), undefined, 'the stale row is no longer cached');
    assert.equal((await h.services.values.read(h.ctx, 'READ_RACED', 'production')).value, expected);
    assert.equal(await failedReads(), 0, 'nothing failed');
  });

  test("a rotation's read of a pending version loaded just before the rewrap retired its KEK returns the value", async () => {
    const env = await h.services.tenants.environment(h.ctx.tenantId, 'production');
    const secret = await h.services.secrets.load(h.ctx, 'READ_RACED');
    const target = { secretId: secret.id, name: 'READ_RACED', environmentId: env.id, environment: 'production' };
    const deps = { keyring: h.services.keyring, rows: h.services.rows, audit: h.services.audit, clock: h.clock, maxValueBytes: TEST_LIMITS.maxValueBytes };
    const { version } = await createPendingVersions({ ...deps, db: h.storage.db }).write(h.ctx, target, 'pending-raced');
    const pause = pauseAfterColumn('wrapped_dek', rotateAndRewrap);
    const pending = createPendingVersions({ ...deps, db: h.storage.db.withPlugin(pause) });
    assert.equal(await pending.open(h.ctx, target, version), 'pending-raced');
    assert.ok(pause.fired());
    await pending.discard(h.ctx, target, version);
  });
});
