import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { PG_URL, skipReason } from '../../test/helpers/databases.ts';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';
import { waitUntilBlockedBy } from '../../test/helpers/pg-lock-waits.ts';
import { failureCode, isDataException, isStatementTimeout, isTransactionConflict } from './db-errors.ts';
import { KeyholdError } from '../errors/index.ts';

const caught = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return assert.fail('expected a throw');
};

test('SQLite still locked by another writer is a transaction conflict; a constraint violation is not', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-busy-'));
  try {
    const a = new DatabaseSync(join(dir, 'x.db'));
    const b = new DatabaseSync(join(dir, 'x.db'), { timeout: 0 });
    a.exec('create table t (id integer primary key)');
    a.exec('begin immediate');
    const busy = caught(() => b.exec('begin immediate'));
    assert.equal(isTransactionConflict(busy), true, String(busy));
    a.exec('insert into t values (1)');
    const duplicate = caught(() => a.exec('insert into t values (1)'));
    assert.equal(isTransactionConflict(duplicate), false);
    a.exec('rollback');
    a.close();
    b.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('PostgreSQL: a deadlock in an audited write', async () => {
  const skip = await skipReason('postgres');
  let h: Harness;
  before(async () => {
    if (!skip) h = await createHarness('postgres');
  });
  after(() => h?.close());

  test('a transaction left open cannot hold its locks for ever: the pool ends idle transactions after a minute', { skip }, async () => {
    const { rows } = await sql<{ idle_in_transaction_session_timeout: string }>`show idle_in_transaction_session_timeout`.execute(h.storage.db);
    assert.equal(rows[0]!.idle_in_transaction_session_timeout, '1min');
  });

  test('is a transaction conflict (409, retry) and leaves the audit log writable', { skip }, async () => {
    const tenantId = h.ctx.tenantId;
    const other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    try {
      await other.query(`set search_path to ${h.database.schema}`);
      const otherPid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      // Only Keyhold's side looks for the cycle (after the server's 1 s): on a loaded machine the other side,
      // which starts waiting a moment later, could otherwise look first and be the one rolled back.
      await other.query(`set deadlock_timeout = '60s'`);
      await other.query('begin');
      await other.query('select seq from audit_head where id = 1 for update');
      // Keyhold's write: the tenant row first, then its event waits for the audit head `other` holds.
      const write = h.storage.db.transaction().execute(async (trx) => {
        await sql`update tenants set authz_generation = authz_generation + 1 where id = ${tenantId}`.execute(trx);
        await h.services.audit.appendInTx(trx, [{
          tenantId, actor: { type: 'system', id: 'system' }, action: 'test.deadlock', resource: { type: 'tenant', id: tenantId, name: null }, outcome: 'allowed',
        }]);
      }).then(() => null, (err: unknown) => err);
      // Keyhold's write holds the tenant row and waits (a sleep could end before it got there on a loaded machine).
      await waitUntilBlockedBy(h.storage.db, [otherPid]);
      // The other order: PostgreSQL finds the cycle and rolls back the transaction that waited first, Keyhold's.
      const blocked = other.query('select id from tenants where id = $1 for update', [tenantId]).catch((err: unknown) => err);
      const err = await write;
      assert.ok(err, 'the write must have lost the deadlock');
      assert.equal(isTransactionConflict(err), true, String(err));
      assert.equal(isDataException(err), false);
      await blocked;
      assert.equal(h.services.audit.health().writable, true, 'a lost transaction is not a failing audit log');
    } finally {
      await other.query('rollback').catch(() => {});
      await other.end();
    }
  });
});

describe('PostgreSQL: a lock waited for too long, a statement run for too long', async () => {
  const skip = await skipReason('postgres');
  const clients: pg.Client[] = [];
  const connect = async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    clients.push(c);
    return c;
  };
  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
  });

  test('a lock not granted within lock_timeout (55P03) is a transaction conflict, not a statement timeout', { skip }, async () => {
    const holder = await connect();
    const waiter = await connect();
    await holder.query('begin');
    await holder.query('select pg_advisory_xact_lock(7140001)');
    await waiter.query(`set lock_timeout = '100ms'`);
    const err = await waiter.query('select pg_advisory_xact_lock(7140001)').then(() => assert.fail('the lock was held'), (e: unknown) => e);
    await holder.query('rollback');
    assert.equal((err as { code?: string }).code, '55P03', String(err));
    assert.equal(isTransactionConflict(err), true);
    assert.equal(isStatementTimeout(err), false);
    assert.equal(failureCode(err), 'TRANSACTION_CONFLICT', 'a failure event records the code the caller got');
  });

  test('a statement cancelled by statement_timeout (57014) is a statement timeout, not a conflict to retry at once', { skip }, async () => {
    const c = await connect();
    await c.query(`set statement_timeout = '100ms'`);
    const err = await c.query('select pg_sleep(5)').then(() => assert.fail('the statement was not cancelled'), (e: unknown) => e);
    assert.equal((err as { code?: string }).code, '57014', String(err));
    assert.equal(isStatementTimeout(err), true);
    assert.equal(isTransactionConflict(err), false);
    assert.equal(isDataException(err), false);
    assert.equal(failureCode(err), 'DATABASE_TIMEOUT');
  });
});

test('only a driver error carries a SQLSTATE: the same code on anything else is neither', () => {
  for (const code of ['55P03', '57014', '40P01']) {
    assert.equal(isTransactionConflict(Object.assign(new Error('x'), { code })), false, code);
    assert.equal(isStatementTimeout(Object.assign(new Error('x'), { code })), false, code);
    assert.equal(failureCode(Object.assign(new Error('x'), { code })), 'INTERNAL', `a bare ${code} is recorded as INTERNAL, never as a driver's code`);
  }
  assert.equal(failureCode(new KeyholdError('SECRET_NOT_FOUND', 'x')), 'SECRET_NOT_FOUND');
});
