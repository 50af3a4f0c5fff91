import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { createTestDatabase, skipReason, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type ServerProcess } from '../helpers/server-process.ts';

/**
 * KEYHOLD_DB_LOCK_TIMEOUT and KEYHOLD_DB_STATEMENT_TIMEOUT reach the pool of a real server process
 * (config → server → storage → pg): another session holds the audit head, which every audited write
 * takes, and a secret created over HTTP ends by the configured bound, well before the defaults
 * (5 s, 30 s) would have ended it.
 */
describe('PostgreSQL statement bounds, set in the environment of a server process', async () => {
  const skip = await skipReason('postgres');
  let database: TestDatabase;
  before(async () => {
    if (!skip) database = await createTestDatabase('postgres');
  });
  after(() => database?.cleanup());

  /** Starts a server with `env`, holds the audit head from another session while `name` is created, and says how that ended. */
  async function createWhileHeadHeld(env: Record<string, string>, name: string) {
    const server: ServerProcess = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'error', env });
    const other = new pg.Client({ connectionString: database.url });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select seq from audit_head where id = 1 for update');
      const started = Date.now();
      const res = await server.request('POST', '/v1/secrets', { body: { name, owner: 'ops' } });
      const ms = Date.now() - started;
      await other.query('rollback');
      const after = await server.request('GET', `/v1/secrets/${name}`);
      return { res, ms, after };
    } finally {
      await other.end();
      await server.stop();
    }
  }

  test('a lock bound of 700 ms: 409 TRANSACTION_CONFLICT after about 700 ms, nothing created', { skip }, async () => {
    const { res, ms, after } = await createWhileHeadHeld({ KEYHOLD_DB_LOCK_TIMEOUT: '700ms', KEYHOLD_DB_STATEMENT_TIMEOUT: '20s' }, 'BOUND_LOCK');
    assert.equal(res.status, 409, res.text);
    assert.equal(res.json.error.code, 'TRANSACTION_CONFLICT');
    assert.ok(ms >= 650, `ended after ${ms} ms: before the bound, so something else refused it`);
    assert.ok(ms < 4_000, `ended after ${ms} ms: the 5 s default, not the configured 700 ms, bounded it`);
    assert.equal(after.status, 404, 'the create was rolled back with its event');
  });

  test('no lock bound and a 1 s statement bound: a 503 after about a second, nothing created', { skip }, async () => {
    const { res, ms, after } = await createWhileHeadHeld({ KEYHOLD_DB_LOCK_TIMEOUT: '0', KEYHOLD_DB_STATEMENT_TIMEOUT: '1s' }, 'BOUND_STATEMENT');
    assert.equal(res.status, 503, res.text);
    // The cancelled statement is the write's own audit event: refused as the audit log's failure (fail closed).
    assert.ok(['DATABASE_TIMEOUT', 'AUDIT_UNAVAILABLE'].includes(res.json.error.code), res.text);
    assert.ok(ms >= 950 && ms < 10_000, `ended after ${ms} ms, not by the configured 1 s`);
    assert.equal(after.status, 404, 'the create was rolled back with its event');
  });
});
