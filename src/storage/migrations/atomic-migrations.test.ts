import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Kysely, sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase, createUnmigratedDatabase } from '../../../test/helpers/databases.ts';
import { createNodeSqliteDialect } from '../sqlite/node-sqlite-dialect.ts';

/**
 * A migration that stops part-way (a crash, a failed statement) must leave the schema as it was,
 * so the next start runs it again from the beginning instead of failing on what it half made.
 */
describeEachDialect('migrations apply whole or not at all', (dialect) => {
  let fresh: Awaited<ReturnType<typeof createUnmigratedDatabase>>;
  before(async () => {
    fresh = await createUnmigratedDatabase(dialect);
  });
  after(() => fresh.close());

  test('a migration that fails after its first statements leaves nothing behind, and the next run applies it', async () => {
    const db = fresh.db as unknown as Kysely<unknown>;
    // 001 creates several tables, then an index of this name: the name is taken, so it fails there.
    await sql`create table secret_versions_kek (x integer)`.execute(db);
    await assert.rejects(fresh.upTo('001-core'), /database migration 001-core failed/);
    const { rows } = await sql<{ n: number }>`select count(*) as n from ${sql.raw(dialect === 'sqlite'
      ? "sqlite_master where type = 'table' and name = 'system_meta'"
      : "information_schema.tables where table_schema = current_schema() and table_name = 'system_meta'")}`.execute(db);
    assert.equal(Number(rows[0]!.n), 0, 'the tables 001 created before it failed are gone');
    await sql`drop table secret_versions_kek`.execute(db);
    await fresh.upTo(null);
  });
});

test('two processes starting on one new SQLite file at once both come up on the migrated schema', async () => {
  const database = await createTestDatabase('sqlite');
  const path = database.url.replace(/^sqlite:/, '');
  const script = `
    import { Kysely } from 'kysely';
    import { createNodeSqliteDialect } from ${JSON.stringify(new URL('../sqlite/node-sqlite-dialect.ts', import.meta.url).href)};
    import { migrateTo } from ${JSON.stringify(new URL('./index.ts', import.meta.url).href)};
    const db = new Kysely({ dialect: createNodeSqliteDialect(${JSON.stringify(path)}).dialect });
    await migrateTo(db, 'sqlite', null);
    await db.destroy();`;
  const start = () => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], { cwd: process.cwd(), stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  const db = new Kysely<unknown>({ dialect: createNodeSqliteDialect(path).dialect });
  try {
    for (const run of await Promise.all([start(), start()])) assert.equal(run.code, 0, run.stderr);
    const { rows } = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
    assert.equal(new Set(rows.map((r) => r.name)).size, rows.length);
    assert.ok(rows.some((r) => r.name === '022-secret-name-collation'));
  } finally {
    await db.destroy();
    await database.cleanup();
  }
});
