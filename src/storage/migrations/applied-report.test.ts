import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS, createTestDatabase, skipReason } from '../../../test/helpers/databases.ts';
import { migrationNames } from './index.ts';

/**
 * Two nodes starting at once on a fresh database: one applies the migrations, the other waits for the lock and
 * applies none. Each reports (and logs at start) only what it applied itself, so the log says which node did it.
 */
for (const dialect of DIALECTS) {
  test(`[${dialect}] two starts racing on a fresh database report every migration once between them`, async (t) => {
    const skip = await skipReason(dialect);
    if (skip) return t.skip(skip);
    const database = await createTestDatabase(dialect);
    t.after(() => database.cleanup());
    // PostgreSQL: at once, the second waits for the first's migration lock. SQLite in one thread cannot wait for its
    // own lock (node:sqlite's busy wait blocks the thread holding it), so there the second start follows the first.
    const both = dialect === 'postgres' ? await Promise.all([database.open(), database.open()]) : [await database.open(), await database.open()];
    try {
      const [a, b] = both.map((s) => s.migrationsApplied);
      assert.deepEqual([...a!, ...b!].sort(), migrationNames().sort(), 'each migration applied exactly once');
      assert.ok(a!.length === 0 || b!.length === 0, `one node applied them all: ${a!.length} and ${b!.length}`);
      const again = await database.open();
      assert.deepEqual(again.migrationsApplied, [], 'a start on an up-to-date database applied nothing');
      await again.close();
    } finally {
      for (const s of both) await s.close();
    }
  });
}
