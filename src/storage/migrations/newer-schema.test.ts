import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/databases.ts';
import { startServer } from '../../../test/helpers/server-process.ts';
import { runCliAt } from '../../../test/helpers/cli.ts';

const FUTURE = '999-from-a-newer-keyhold';

describeEachDialect('a database migrated by a newer version', (dialect) => {
  let database: TestDatabase;
  before(async () => {
    database = await createTestDatabase(dialect);
    const storage = await database.open();
    await sql`insert into kysely_migration (name, timestamp) values (${FUTURE}, '2031-01-01T00:00:00.000Z')`.execute(storage.db);
    await storage.close();
  });
  after(() => database.cleanup());

  test('the server refuses to start on it with one line naming the unknown migration (exit 2), and leaves the schema alone', async () => {
    await assert.rejects(startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn', startTimeoutMs: 15_000 }), (err: Error) => {
      const [, ...stderr] = err.message.split('\n');
      const lines = stderr.filter((l) => l.trim() !== '');
      assert.match(err.message, /exited before listening \(2\)/);
      assert.equal(lines.length, 1, err.message);
      assert.match(lines[0]!, new RegExp(`^keyhold cannot start: .*newer Keyhold.*${FUTURE}`));
      return true;
    });
    const storage = await database.open().catch((err: Error) => err);
    assert.ok(storage instanceof Error, 'opening it from code is refused too');
    assert.match(storage.message, new RegExp(FUTURE));
  });

  test('keyhold migrate refuses it too: one line naming the unknown migration, the usage exit (2), nothing applied', { skip: dialect !== 'postgres' && 'keyhold migrate is for PostgreSQL' }, async () => {
    const res = await runCliAt('http://127.0.0.1:9', ['migrate', '--database-url', database.url], { token: null });
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, new RegExp(`^error: the database was migrated by a newer Keyhold.*${FUTURE}`));
    assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
    assert.equal(res.stdout, '');
  });
});
