import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { Database } from '../../storage/schema.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import { createKeyService } from './key-service.ts';

/** A database whose first `selectFrom('users')` (the rewrap's TOTP pass, after its batches) first lets `interleave` run. */
function beforeTotpPass(db: Kysely<Database>, interleave: () => Promise<void>): Kysely<Database> {
  let pending = true;
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'selectFrom') {
        return (table: 'users') => {
          if (table !== 'users' || !pending) return target.selectFrom(table);
          pending = false;
          const builder = target.selectFrom(table);
          // Run the interleaving before the first statement of the pass: wrap the whole pass in a promise chain.
          return new Proxy(builder, { get: (b, p) => wrapAsync(b, p, interleave) });
        };
      }
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Every method of a query builder returns a builder whose `execute` waits for `before` first. */
function wrapAsync(builder: object, prop: string | symbol, before: () => Promise<void>): unknown {
  const value = Reflect.get(builder, prop) as unknown;
  if (typeof value !== 'function') return value;
  if (prop === 'execute') return async () => { await before(); return (value as () => Promise<unknown>).call(builder); };
  return (...args: unknown[]) => {
    const next = (value as (...a: unknown[]) => unknown).apply(builder, args);
    return next && typeof next === 'object' ? new Proxy(next, { get: (b, p) => wrapAsync(b, p, before) }) : next;
  };
}

describeEachDialect('two KEK rewraps at once', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'REWRAPPED', owner: 'ops' });
    for (let i = 0; i < 3; i++) await h.services.values.write(h.ctx, 'REWRAPPED', 'production', { value: `value-${i}` });
  });
  after(() => h.close());

  test('a rewrap that finishes after a later rotation and rewrap never lowers the minimum decryption version', async () => {
    await h.services.keys.rotate(h.ctx); // version 2: the slow rewrap's target
    const slow = createKeyService({
      db: beforeTotpPass(h.storage.db, async () => {
        // Meanwhile another operator (or node) rotates to version 3 and rewraps all the way.
        await h.services.keys.rotate(h.ctx);
        assert.equal((await h.services.keys.rewrap(h.ctx)).minDecryptionVersion, 3);
      }),
      keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
    });
    const finished = await slow.rewrap(h.ctx);
    assert.deepEqual([finished.currentVersion, finished.minDecryptionVersion], [3, 3]);
    const status = await h.services.keys.status(h.ctx);
    assert.equal(status.minDecryptionVersion, 3, 'still 3 in the database');
    assert.deepEqual(status.versions.map((v) => [v.version, v.retiredAt !== null]), [[1, true], [2, true], [3, false]]);
    assert.equal((await h.services.values.read(h.ctx, 'REWRAPPED', 'production')).value, 'value-2');
  });
});

/** Holds the first `select ... from secret_versions` of a database after it answered, until `meanwhile` is done. */
function holdingBatch(h: Harness, meanwhile: () => Promise<void>) {
  const pause = pauseAfterRead('secret_versions', meanwhile);
  const keys = createKeyService({
    db: h.storage.db.withPlugin(pause),
    keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
  });
  return { keys, pause };
}

/**
 * A rewrap reads a batch of data keys, then a concurrent rewrap moves those rows and retires the
 * KEK they were under. The first has nothing left to move there: that is not data corruption (500
 * KEY_VERSION_RETIRED). It goes on, and finishes once every data key is at or past its target.
 */
describeEachDialect('a rewrap whose batch a concurrent rewrap moved first', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'MOVED_UNDER', owner: 'ops' });
    for (let i = 0; i < 3; i++) await h.services.values.write(h.ctx, 'MOVED_UNDER', 'production', { value: `moved-${i}` });
  });
  after(() => h.close());

  const lastRewrapEvent = async () => h.storage.db.selectFrom('audit_events').select(['outcome', 'reason'])
    .where('tenant_id', '=', h.ctx.tenantId).where('action', '=', 'key.rewrap').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();

  test('a later rotation and rewrap that finish while its batch is in hand let it finish cleanly, moving nothing', async () => {
    await h.services.keys.rotate(h.ctx); // version 2: the held rewrap's target; the values are under 1
    const { keys, pause } = holdingBatch(h, async () => {
      await h.services.keys.rotate(h.ctx);
      assert.equal((await h.services.keys.rewrap(h.ctx)).minDecryptionVersion, 3); // retires 1 and 2
    });
    const finished = await keys.rewrap(h.ctx);
    assert.ok(pause.fired());
    assert.deepEqual([finished.currentVersion, finished.minDecryptionVersion, finished.rewrapped], [3, 3, 0]);
    assert.deepEqual({ ...(await lastRewrapEvent()) }, { outcome: 'allowed', reason: null });
    assert.equal((await h.services.values.read(h.ctx, 'MOVED_UNDER', 'production', { version: 1 })).value, 'moved-0');
  });

  test('an earlier rewrap (to a lower version) that finishes while its batch is in hand leaves it to move the rest to its own target', async () => {
    await h.services.keys.rotate(h.ctx); // version 4: the earlier rewrap's target
    let bHeld!: () => void;
    let releaseB!: () => void;
    const held = new Promise<void>((r) => (bHeld = r));
    const released = new Promise<void>((r) => (releaseB = r));
    const earlier = holdingBatch(h, () => { bHeld(); return released; });
    const earlierDone = earlier.keys.rewrap(h.ctx);
    await held; // it has read its target (4) and a batch under 3
    await h.services.keys.rotate(h.ctx); // version 5
    const later = holdingBatch(h, async () => {
      releaseB(); // the earlier one moves the rows, raises the minimum to 4 and retires 3
      assert.equal((await earlierDone).minDecryptionVersion, 4);
    });
    const finished = await later.keys.rewrap(h.ctx);
    assert.ok(later.pause.fired());
    assert.deepEqual([finished.currentVersion, finished.minDecryptionVersion], [5, 5]);
    const status = await h.services.keys.status(h.ctx);
    assert.deepEqual(status.versions.map((v) => [v.version, v.retiredAt !== null, v.dataKeys]), [[1, true, 0], [2, true, 0], [3, true, 0], [4, true, 0], [5, false, 3]]);
    assert.deepEqual({ ...(await lastRewrapEvent()) }, { outcome: 'allowed', reason: null });
    for (let i = 0; i < 3; i++) assert.equal((await h.services.values.read(h.ctx, 'MOVED_UNDER', 'production', { version: i + 1 })).value, `moved-${i}`);
  });

  test('a data key still under a retired KEK version (no newer copy anywhere) still fails the rewrap as KEY_VERSION_RETIRED', async () => {
    await h.services.keys.rotate(h.ctx); // version 6
    const victim = await h.storage.db.selectFrom('secret_versions').select(['id', 'wrapped_dek', 'kek_version'])
      .where('tenant_id', '=', h.ctx.tenantId).where('version', '=', 1).executeTakeFirstOrThrow();
    const relabelled = Buffer.from(victim.wrapped_dek!);
    relabelled.writeUInt32BE(4, 1); // names retired version 4, as its row does
    await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: relabelled, kek_version: 4 }).where('id', '=', victim.id).execute();
    try {
      await assert.rejects(h.services.keys.rewrap(h.ctx), { code: 'KEY_VERSION_RETIRED' });
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: victim.wrapped_dek, kek_version: victim.kek_version }).where('id', '=', victim.id).execute();
    }
  });
});
