import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, skipReason, type TestDatabase } from '../helpers/databases.ts';
import { until } from '../helpers/deadline.ts';
import { startServer, type HttpResult, type ServerProcess } from '../helpers/server-process.ts';

/**
 * SPEC §13 with real processes: two Keyhold servers on one PostgreSQL schema. A machine token is
 * revoked through one; the other, which has just admitted it (and so holds it in its lookup cache
 * for 5 s), refuses it as soon as the revocation's message arrives. The check is against that
 * bound: a refusal later than the cache's lifetime would mean the message never came.
 */
describe('two servers on one PostgreSQL schema', async () => {
  const skip = await skipReason('postgres');
  if (skip) {
    describe('skipped', { skip }, () => {});
    return;
  }
  let database: TestDatabase;
  let a: ServerProcess;
  let b: ServerProcess;

  before(async () => {
    database = await createTestDatabase('postgres');
    a = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn' });
    // Dev mode on the same data directory: the database is initialised, so B unseals with A's dev key.
    b = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn' });
  });
  after(async () => {
    await b?.stop();
    await a?.stop();
    await database?.cleanup();
  });

  const ok = (res: HttpResult, status = 200) => {
    assert.equal(res.status, status, res.text);
    return res.json;
  };

  /** Both servers listen on the schema's channel (a LISTEN connection each). */
  async function listeners(): Promise<number> {
    const storage = await database.open();
    try {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where query = 'listen keyhold_' || left(md5(current_schema()), 24)`.execute(storage.db);
      return rows[0]!.n;
    } finally {
      await storage.close();
    }
  }

  test('each server listens for the other\'s changes', async () => {
    await until('two listeners', async () => (await listeners()) >= 2, 10_000);
  });

  test('a token revoked through one server is refused by the other before its cache entry would run out', async () => {
    const machine = ok(await a.request('POST', '/v1/machines', { body: { name: 'two-nodes', kind: 'client_secret' } }), 201);
    const exchanged = ok(await a.request('POST', '/v1/auth/token', {
      token: null, body: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret },
    }));
    const whoamiOnB = () => b.request('GET', '/v1/auth/whoami', { token: exchanged.access_token });
    ok(await whoamiOnB());
    const cachedAt = Date.now();
    const { items } = ok(await a.request('GET', `/v1/machines/${machine.id}/tokens`));
    assert.equal(items.length, 1);
    ok(await a.request('DELETE', `/v1/auth/tokens/${items[0].id}`), 204);
    let status = 200;
    while (status === 200 && Date.now() - cachedAt < 10_000) {
      status = (await whoamiOnB()).status;
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const after = Date.now() - cachedAt;
    assert.equal(status, 401);
    assert.ok(after < 4_000, `server B refused ${after} ms after caching the token: its cache ran out (5 s), no message came`);
  });
});
