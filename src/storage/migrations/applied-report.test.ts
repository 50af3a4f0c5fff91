import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DIALECTS, createTestDatabase, skipReason, type TestDatabase } from '../../../test/helpers/databases.ts';
import { migrationsAppliedByRacingStarts } from '../../../test/helpers/start-in-worker.ts';
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
    // At once: the second waits for the first's migration lock. On SQLite each start runs in a worker thread, as a
    // process would: in one thread, node:sqlite's busy wait would block the thread holding the lock it waits for.
    const [a, b] = dialect === 'postgres' ? await racingStartsHere(database) : await migrationsAppliedByRacingStarts({ url: database.url }, 2);
    assert.deepEqual([...a!, ...b!].sort(), migrationNames().sort(), 'each migration applied exactly once');
    assert.ok(a!.length === 0 || b!.length === 0, `one node applied them all: ${a!.length} and ${b!.length}`);
    const again = await database.open();
    assert.deepEqual(again.migrationsApplied, [], 'a start on an up-to-date database applied nothing');
    await again.close();
  });
}

/** Two starts at once in this thread (PostgreSQL's driver waits without blocking it): what each applied; both closed again. */
async function racingStartsHere(database: TestDatabase): Promise<string[][]> {
  const starts = await Promise.allSettled([database.open(), database.open()]);
  for (const s of starts) if (s.status === 'fulfilled') await s.value.close();
  return starts.map((s) => {
    if (s.status === 'rejected') throw s.reason;
    return s.value.migrationsApplied;
  });
}
