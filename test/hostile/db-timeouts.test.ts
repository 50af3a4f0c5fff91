import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Harness } from '../helpers/harness.ts';
import { describeWithOtherSession } from '../helpers/other-session-suite.ts';
import { waitUntilBlockedBy } from '../helpers/pg-lock-waits.ts';
import type { StatementBounds } from '../../src/storage/postgres/postgres-dialect.ts';
import { within } from '../helpers/deadline.ts';

/**
 * Another PostgreSQL session holds a lock Keyhold needs and does not let go (a hung transaction, an
 * administrator in psql). The request ends within the pool's bound, over HTTP, with a stable code and
 * nothing written; the audit log can be written afterwards and its chain still verifies.
 */

const ENV = 'production';
/** Far past every bound below, far short of the idle-transaction end (60 s) and the test timeout. */
const UNBOUNDED_MS = 25_000;

/** A server over PostgreSQL with `bounds`, and another session to hold locks with. */
function withHeldLocks(bounds: StatementBounds, body: (s: {
  h: () => Harness;
  /** Holds `lockSql` (parameters `params`) in the other session while `during` runs, and asserts `during`'s request waited for it. */
  holding<T>(lockSql: string, params: unknown[], during: () => Promise<T>): Promise<{ result: T; ms: number }>;
}) => void) {
  describeWithOtherSession(`lock ${bounds.lockTimeoutMs} ms, statement ${bounds.statementTimeoutMs} ms`, bounds, ({ h, other }) => body({
    h,
    async holding(lockSql, params, during) {
      const { client, pid } = other();
      await client.query('begin');
      try {
        await client.query(lockSql, params);
        const started = Date.now();
        const pending = during().then((result) => ({ result }), (err: unknown) => ({ err }));
        // The request got as far as the lock and waits for it (not refused earlier for another reason).
        await waitUntilBlockedBy(h().storage.db, [pid]);
        // Unbounded, it would wait as long as the other session holds on: give up long before the test's own timeout.
        const outcome = await within(pending, UNBOUNDED_MS, null);
        if (outcome === null) throw new Error(`the request still waited after ${UNBOUNDED_MS} ms: nothing bounded it`);
        const ms = Date.now() - started;
        if ('err' in outcome) throw outcome.err;
        return { result: outcome.result, ms };
      } finally {
        await client.query('rollback');
      }
    },
  }));
}

/** The HTTP calls and checks every case needs. */
function api(h: Harness) {
  const headers = { authorization: `Bearer ${h.rootToken}` };
  return {
    write: (name: string, value: string) => h.app.inject({ method: 'PUT', url: `/v1/secrets/${name}/values/${ENV}`, headers, payload: { value } }),
    read: (name: string) => h.app.inject({ method: 'GET', url: `/v1/secrets/${name}/values/${ENV}`, headers }),
    /** A new secret with one version in ENV; what is stored of it. */
    async seeded(name: string, value = 'first-value') {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
      assert.equal((await this.write(name, value)).statusCode, 200);
      return this.stored(name);
    },
    /** The versions stored, and the current one's value. */
    async stored(name: string) {
      const secret = (await h.storage.db.selectFrom('secrets').select('id').where('name', '=', name).executeTakeFirstOrThrow()).id;
      const versions = (await h.storage.db.selectFrom('secret_versions').select('version').where('secret_id', '=', secret).orderBy('version').execute()).map((v) => v.version);
      const current = (await h.services.values.read(h.ctx, name, ENV)).value;
      return { secret, versions, current };
    },
    async verifies() {
      const res = await h.app.inject({ method: 'GET', url: '/v1/audit/verify', headers });
      assert.equal(res.statusCode, 200, res.body);
      const result = res.json<{ ok: boolean; problem: string | null }>();
      assert.equal(result.ok, true, result.problem ?? '');
    },
    async writeEvents(name: string) {
      return h.storage.db.selectFrom('audit_events').select(['secret_version', 'outcome']).where('action', '=', 'secret.write').where('resource_name', '=', name).execute();
    },
  };
}

const code = (res: { json: () => unknown }) => (res.json() as { error: { code: string } }).error.code;

withHeldLocks({ lockTimeoutMs: 1000, statementTimeoutMs: 30_000 }, ({ h, holding }) => {
  test('a write whose secret another session holds ends within the lock bound: 409 TRANSACTION_CONFLICT, nothing written, the log writable and verified', async () => {
    const a = api(h());
    const before = await a.seeded('HELD_ROW');

    const { result: res, ms } = await holding('select id from secrets where id = $1 for update', [before.secret], () => a.write('HELD_ROW', 'second-value'));
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(code(res), 'TRANSACTION_CONFLICT');
    // Past the bound, and long before the statement bound (30 s) or the idle-transaction end (60 s) could have ended it.
    assert.ok(ms >= 900 && ms < 20_000, `ended after ${ms} ms`);

    assert.deepEqual(await a.stored('HELD_ROW'), before, 'no version, no label moved');
    assert.deepEqual((await a.writeEvents('HELD_ROW')).map((e) => e.secret_version), [1], 'no event for a write that did not happen');
    assert.equal(h().services.audit.health().writable, true, 'a lost lock wait is not a failing audit log');
    assert.equal((await a.write('HELD_ROW', 'third-value')).statusCode, 200, 'writable once the lock is gone');
    await a.verifies();
  });

  test('an audited write that cannot take the audit chain head within the lock bound is a 409 conflict too: the write rolls back, the log stays writable', async () => {
    const a = api(h());
    const before = await a.seeded('HELD_HEAD');

    const { result: res } = await holding('select seq from audit_head where id = 1 for update', [], () => a.write('HELD_HEAD', 'second-value'));
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(code(res), 'TRANSACTION_CONFLICT');
    assert.deepEqual(await a.stored('HELD_HEAD'), before, 'the version and its event commit together or not at all');
    assert.equal(h().services.audit.health().writable, true);
    assert.equal((await a.write('HELD_HEAD', 'third-value')).statusCode, 200);
    await a.verifies();
  });

  test('a read whose event cannot take the head within the lock bound is refused (AUDIT_UNAVAILABLE): the value does not leave, and the log is writable again after', async () => {
    const a = api(h());
    await a.seeded('HELD_READ', 'read-me-value');

    const { result: res } = await holding('select seq from audit_head where id = 1 for update', [], () => a.read('HELD_READ'));
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(code(res), 'AUDIT_UNAVAILABLE');
    assert.doesNotMatch(res.body, /read-me-value/);
    assert.equal(h().services.audit.health().writable, false, 'operators are told the log could not be written');

    const again = await a.read('HELD_READ');
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(h().services.audit.health().writable, true, 'writable again with the next event');
    await a.verifies();
  });
});

withHeldLocks({ lockTimeoutMs: 0, statementTimeoutMs: 1000 }, ({ h, holding }) => {
  test('a write stuck past the statement bound is 503 DATABASE_TIMEOUT, never a 500: nothing written, the log writable and verified', async () => {
    const a = api(h());
    const before = await a.seeded('SLOW_ROW');

    const { result: res, ms } = await holding('select id from secrets where id = $1 for update', [before.secret], () => a.write('SLOW_ROW', 'second-value'));
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(code(res), 'DATABASE_TIMEOUT');
    assert.ok(ms >= 900 && ms < 20_000, `ended after ${ms} ms`);
    assert.deepEqual(await a.stored('SLOW_ROW'), before);
    assert.equal(h().services.audit.health().writable, true);
    assert.match(h().logs.text(), /DATABASE_TIMEOUT/, 'logged for the operator');
    assert.equal((await a.write('SLOW_ROW', 'third-value')).statusCode, 200);
    await a.verifies();
  });

  test('an audited write whose own event runs past the statement bound fails closed (AUDIT_UNAVAILABLE) with nothing written; the log is writable again after', async () => {
    const a = api(h());
    const before = await a.seeded('SLOW_HEAD');

    const { result: res } = await holding('select seq from audit_head where id = 1 for update', [], () => a.write('SLOW_HEAD', 'second-value'));
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(code(res), 'AUDIT_UNAVAILABLE');
    // Before anything else is recorded: reading the value back (below) records an event, which makes the log writable again.
    assert.equal(h().services.audit.health().writable, false, 'operators are told the log could not be written');
    assert.deepEqual(await a.stored('SLOW_HEAD'), before, 'the version rolled back with its event');
    assert.equal(h().services.audit.health().writable, true, 'writable again with the next event');

    assert.equal((await a.write('SLOW_HEAD', 'third-value')).statusCode, 200);
    assert.deepEqual((await a.writeEvents('SLOW_HEAD')).map((e) => e.secret_version), [1, 2]);
    await a.verifies();
  });
});
