import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase } from '../../../test/helpers/databases.ts';
import { ROLLBACK_WINDOW_MS, TEST_LIMITS } from '../../../test/helpers/harness.ts';
import { createServices } from '../../main/compose.ts';
import { createManualClock } from '../../platform/clock.ts';
import { identitySettings } from '../../config/config.ts';

describeEachDialect('initialisation is all or nothing', (dialect) => {
  test('an init that fails at its last step leaves no seal config, tenant or token behind, and can be retried', async () => {
    const database = await createTestDatabase(dialect);
    const storage = await database.open();
    try {
      const services = createServices({
        config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings() },
        storage, clock: createManualClock(),
      });
      await sql`alter table tokens rename to tokens_broken`.execute(storage.db);
      await assert.rejects(services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 }));
      const status = await services.system.status();
      assert.deepEqual([status.initialized, status.sealed], [false, true]);
      assert.equal((await storage.db.selectFrom('tenants').select('id').execute()).length, 0);
      assert.equal((await storage.db.selectFrom('system_meta').select('key').execute()).length, 0);

      await sql`alter table tokens_broken rename to tokens`.execute(storage.db);
      const init = await services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 });
      assert.equal(init.shares.length, 3);
      assert.equal((await services.system.status()).sealed, true);
      await services.system.unseal(init.shares[0]!);
      assert.equal((await services.system.unseal(init.shares[2]!)).sealed, false);
      assert.ok(await services.tokens.authenticate(init.rootToken));
      await assert.rejects(services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 }), { code: 'ALREADY_INITIALIZED' });
    } finally {
      await storage.close();
      await database.cleanup();
    }
  });

  test('a single share (1 of 1), as the docs and the CLI allow, initialises and unseals instead of failing with a 500', async () => {
    const database = await createTestDatabase(dialect);
    const storage = await database.open();
    try {
      const services = createServices({
        config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings() },
        storage, clock: createManualClock(),
      });
      const init = await services.system.initialize({ type: 'shamir', shares: 1, threshold: 1 });
      assert.equal(init.shares.length, 1);
      const status = await services.system.unseal(init.shares[0]!);
      assert.deepEqual([status.sealed, status.threshold, status.shares], [false, 1, 1]);
      assert.ok(await services.tokens.authenticate(init.rootToken));
    } finally {
      await storage.close();
      await database.cleanup();
    }
  });

  test('two inits at once on one server: one wins, and the key it hands out opens everything it created', async () => {
    const database = await createTestDatabase(dialect);
    const storage = await database.open();
    try {
      const services = createServices({
        config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings() },
        storage, clock: createManualClock(),
      });
      const results = await Promise.allSettled([1, 2].map(() => services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 })));
      const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(won.length, 1, 'exactly one init wins');
      assert.deepEqual(results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as { code?: string }).code] : [])), ['ALREADY_INITIALIZED']);
      for (const share of won[0]!.shares.slice(0, 2)) await services.system.unseal(share);
      const tenant = (await services.tenants.findByName('default'))!;
      const ctx = { tenantId: tenant.id, actor: { type: 'root' as const, id: 'test-root', name: 'root' }, requestId: 'test' };
      await services.secrets.create(ctx, { name: 'AFTER_INIT', owner: 'ops' });
      await services.values.write(ctx, 'AFTER_INIT', 'production', { value: 'opens' });
      assert.equal((await services.values.read(ctx, 'AFTER_INIT', 'production')).value, 'opens', "the default tenant's KEK is wrapped by the root key the shares give");
    } finally {
      await storage.close();
      await database.cleanup();
    }
  });
});
