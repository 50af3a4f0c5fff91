import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import pg from 'pg';
import { PG_URL, skipReason } from '../../../test/helpers/databases.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import { isStatementTimeout } from '../../storage/db-errors.ts';

/**
 * Audit verify and export read more the longer the log grows; on PostgreSQL the pool's statement
 * timeout must not cut them. Here a statement is made long by holding the events table: the pool
 * has no lock bound, so only the statement bound could end the wait.
 */
describe('PostgreSQL: verify and export outlast the statement bound', async () => {
  const skip = await skipReason('postgres');
  let h: Harness;
  let other: pg.Client;
  let otherPid: number;
  before(async () => {
    if (skip) return;
    h = await createHarness('postgres', { bounds: { lockTimeoutMs: 0, statementTimeoutMs: 1000 } });
    for (let i = 0; i < 3; i++) await h.services.secrets.create(h.ctx, { name: `LONG_READ_${i}`, owner: 'audit' });
    other = new pg.Client({ connectionString: PG_URL });
    await other.connect();
    await other.query(`set search_path to ${h.database.schema}`);
    otherPid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  });
  after(async () => {
    await other?.end();
    await h?.close();
  });

  /**
   * Holds the events table while `read` runs: once `read` waits for it, a bounded read started
   * after it is cancelled, so `read` has waited past the bound; it must still be waiting, and
   * finish when the table is let go.
   */
  async function outlastsTheBound<T>(read: () => Promise<T>): Promise<T> {
    await other.query('begin');
    try {
      await other.query('lock table audit_events in access exclusive mode');
      const reading = read().then((value) => ({ value }), (err: unknown) => ({ err }));
      const waiting = await waitUntilBlockedBy(h.storage.db, [otherPid]);
      const control = await sql`select seq from audit_events limit 1`.execute(h.storage.db).then(() => null, (err: unknown) => err);
      assert.equal(isStatementTimeout(control), true, `a bounded read is cancelled: ${String(control)}`);
      const still = await waitUntilBlockedBy(h.storage.db, [otherPid], 0).catch(() => null);
      assert.equal(still, waiting, 'the long read still waits (under the bound it would have been cancelled)');
      await other.query('commit');
      const outcome = await reading;
      if ('err' in outcome) throw outcome.err;
      return outcome.value;
    } finally {
      await other.query('rollback').catch(() => {});
    }
  }

  test('verify scans the whole log for published checkpoints, however long that takes', { skip }, async () => {
    await h.services.checkpoints.checkpoint();
    const result = await outlastsTheBound(() => h.services.auditQueries.verify(h.ctx));
    assert.equal(result.ok, true, result.problem ?? '');
    assert.ok(result.events > 3 && result.checkpoints >= 1, JSON.stringify(result));
  });

  test('an export reads its pages, however long each takes', { skip }, async () => {
    // The export's own event is written before the stream is handed back; its pages are read as it is consumed.
    const stream = await h.services.auditQueries.export(h.ctx, { action: 'secret.create' }, 'json');
    const lines = await outlastsTheBound(async () => {
      let text = '';
      for await (const chunk of stream) text += chunk;
      return text.trim().split('\n');
    });
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { resource: { name: string } }).resource.name).sort(), ['LONG_READ_0', 'LONG_READ_1', 'LONG_READ_2']);
  });
});
