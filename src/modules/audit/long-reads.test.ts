import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeWithOtherSession } from '../../../test/helpers/other-session-suite.ts';
import { waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import { isStatementTimeout } from '../../storage/db-errors.ts';

/**
 * Audit verify and export read more the longer the log grows; on PostgreSQL the pool's statement
 * timeout must not cut them. Here a statement is made long by holding the events table: the pool
 * has no lock bound, so only the statement bound could end the wait.
 */
describeWithOtherSession('PostgreSQL: verify and export outlast the statement bound', { lockTimeoutMs: 0, statementTimeoutMs: 1000 }, ({ h, other }) => {
  before(async () => {
    for (let i = 0; i < 3; i++) await h().services.secrets.create(h().ctx, { name: `LONG_READ_${i}`, owner: 'audit' });
  });

  /**
   * Holds the events table while `read` runs: once `read` waits for it, a bounded read started
   * after it is cancelled, so `read` has waited past the bound; it must still be waiting, and
   * finish when the table is let go.
   */
  async function outlastsTheBound<T>(read: () => Promise<T>): Promise<T> {
    const { client, pid } = other();
    const db = h().storage.db;
    await client.query('begin');
    try {
      await client.query('lock table audit_events in access exclusive mode');
      const reading = read().then((value) => ({ value }), (err: unknown) => ({ err }));
      const waiting = await waitUntilBlockedBy(db, [pid]);
      const control = await sql`select seq from audit_events limit 1`.execute(db).then(() => null, (err: unknown) => err);
      assert.equal(isStatementTimeout(control), true, `a bounded read is cancelled: ${String(control)}`);
      const still = await waitUntilBlockedBy(db, [pid], 0).catch(() => null);
      assert.equal(still, waiting, 'the long read still waits (under the bound it would have been cancelled)');
      await client.query('commit');
      const outcome = await reading;
      if ('err' in outcome) throw outcome.err;
      return outcome.value;
    } finally {
      await client.query('rollback').catch(() => {});
    }
  }

  test('verify scans the whole log for published checkpoints, however long that takes', async () => {
    await h().services.checkpoints.checkpoint();
    const result = await outlastsTheBound(() => h().services.auditQueries.verify(h().ctx));
    assert.equal(result.ok, true, result.problem ?? '');
    assert.ok(result.events > 3 && result.checkpoints >= 1, JSON.stringify(result));
  });

  test('an export reads its pages, however long each takes', async () => {
    // The export's own event is written before the stream is handed back; its pages are read as it is consumed.
    const stream = await h().services.auditQueries.export(h().ctx, { action: 'secret.create' }, 'json');
    const lines = await outlastsTheBound(async () => {
      let text = '';
      for await (const chunk of stream) text += chunk;
      return text.trim().split('\n');
    });
    assert.deepEqual(lines.map((l) => (JSON.parse(l) as { resource: { name: string } }).resource.name).sort(), ['LONG_READ_0', 'LONG_READ_1', 'LONG_READ_2']);
  });
});
