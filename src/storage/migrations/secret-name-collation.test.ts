import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createUnmigratedDatabase } from '../../../test/helpers/databases.ts';
import { createSecretRepository } from '../../modules/secrets/secret-repository.ts';

/**
 * A list by prefix is a range over names in the database's order. On a PostgreSQL database whose
 * default collation is linguistic (en_US, ICU: common on real servers; the test database is C),
 * `bx` sorts between `B` and `B` + U+FFFF. 022 makes names compare byte by byte there too.
 */
describeEachDialect('secret names compare byte by byte, whatever the database collation', (dialect) => {
  let fresh: Awaited<ReturnType<typeof createUnmigratedDatabase>>;
  before(async () => {
    fresh = await createUnmigratedDatabase(dialect);
  });
  after(() => fresh.close());

  test('a prefix lists only the names that start with it, in the same order on every dialect', async () => {
    const { db, upTo } = fresh;
    await upTo('021-factor-epochs');
    // What a database created with an ICU en-US default gives every text column.
    if (dialect === 'postgres') await sql`alter table secrets alter column name type text collate "en-US-x-icu"`.execute(db);
    await db.insertInto('tenants').values({ id: 't1', name: 'collation', created_at: 0, kek_version: 1, kek_min_version: 1, policy_version: 0, authz_generation: 0 }).execute();
    const names = ['B1', 'bx', 'b-x', 'B_2', 'Ba', 'C1', 'a9', 'B'];
    await db.insertInto('secrets').values(names.map((name, i) => ({
      id: `s${i}`, tenant_id: 't1', name, label: '', owner: 'ops', purpose: '', classification: 'internal', tags: '[]',
      expires_at: null, created_at: 0, created_by: 'test', updated_at: 0, deleted_at: null, revision: 1,
    }))).execute();
    const list = async (prefix?: string, after?: string) => (await createSecretRepository(db).listSecrets('t1', {
      includeDeleted: false, limit: 100, ...(prefix ? { prefix } : {}), ...(after ? { after } : {}),
    })).map((r) => r.name);
    if (dialect === 'postgres') assert.ok((await list('B')).includes('bx'), 'the linguistic collation really does put bx in the range (the case this migration is for)');

    await upTo(null);
    assert.deepEqual(await list('B'), ['B', 'B1', 'B_2', 'Ba']);
    assert.deepEqual(await list('b'), ['b-x', 'bx']);
    assert.deepEqual(await list(), ['B', 'B1', 'B_2', 'Ba', 'C1', 'a9', 'b-x', 'bx'], 'byte order, as SQLite');
    assert.deepEqual(await list(undefined, 'Ba'), ['C1', 'a9', 'b-x', 'bx'], 'pages follow the same order');
  });
});
