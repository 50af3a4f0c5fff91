import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { Database } from '../../storage/schema.ts';
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
