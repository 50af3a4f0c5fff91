import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { createAuditDelivery, type AuditDelivery } from '../../src/modules/audit/delivery.ts';
import { createDbCursorStore } from '../../src/modules/audit/streaming.ts';
import type { AuditSink } from '../../src/modules/audit/event.ts';
import { seqs, waitFor } from '../../src/modules/audit/sinks/testing.ts';
import type { Storage } from '../../src/storage/database.ts';
import { systemClock } from '../../src/platform/clock.ts';

/** A sink that keeps every batch offered to it; `ackLost` makes a call fail after the far side got the batch. */
function recordingSink(name: string, ackLost: (call: number) => boolean = () => false) {
  const offered: number[][] = [];
  const sink: AuditSink = {
    name,
    async deliver(events) {
      offered.push(events.map((e) => e.seq));
      if (ackLost(offered.length)) throw new Error('connection reset before the answer');
    },
    async close() {},
  };
  return { sink, offered, received: () => offered.flat() };
}

/**
 * The audit delivery as a server process runs it: over the real durable log and the database cursor
 * store. Each "process" gets its own Storage (a new connection or pool to the same database), so what
 * carries over a restart is only what the database kept.
 */
describeEachDialect('audit delivery over the database cursor store', (dialect) => {
  let h: Harness;
  const opened: Storage[] = [];
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'STREAMED', owner: 'ops' });
  });
  after(async () => {
    for (const storage of opened) await storage.close();
    await h?.close();
  });

  /** A fresh connection to the harness's database, as a restarted process would open. */
  async function processStorage(): Promise<Storage> {
    const storage = await h.database.open();
    opened.push(storage);
    return storage;
  }

  function delivery(storage: Storage, sink: AuditSink, backoffMs = 5): AuditDelivery {
    return createAuditDelivery({
      source: h.services.audit, sinks: [sink], cursors: createDbCursorStore(storage.db), clock: systemClock,
      timeoutMs: 2000, batchSize: 4, backoff: { baseMs: backoffMs, maxMs: backoffMs, random: () => 0 }, pollMs: 20,
    });
  }

  async function appendEvents(n: number): Promise<number> {
    for (let i = 0; i < n; i++) await h.services.values.write(h.ctx, 'STREAMED', 'production', { value: `streamed-value-${i}` });
    return (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
  }

  const storedCursor = async (sink: string) =>
    (await h.storage.db.selectFrom('audit_cursors').select('seq').where('sink', '=', sink).executeTakeFirst())?.seq;

  test('a sink never seen starts at 0, and each sink keeps its own cursor row, overwritten in place', async () => {
    const store = createDbCursorStore((await processStorage()).db);
    assert.equal(await store.get('never-seen'), 0);
    await store.set('a', 5);
    await store.set('b', 2);
    await store.set('a', 9);
    assert.deepEqual([await store.get('a'), await store.get('b')], [9, 2]);
    const again = createDbCursorStore((await processStorage()).db);
    assert.deepEqual([await again.get('a'), await again.get('b')], [9, 2], 'a new connection reads what was stored');
    const rows = await h.storage.db.selectFrom('audit_cursors').selectAll().where('sink', 'in', ['a', 'b']).orderBy('sink').execute();
    assert.deepEqual(rows.map((r) => [r.sink, Number(r.seq)]), [['a', 9], ['b', 2]]);
  });

  test('a delivery restarted over the database cursor store sends exactly the events appended since it stopped', async () => {
    const firstHead = await appendEvents(6);
    const first = recordingSink('siem');
    const d1 = delivery(await processStorage(), first.sink);
    d1.start();
    await waitFor('the first run to reach the head', () => d1.status()[0]!.cursor === firstHead, 10_000);
    await d1.stop();
    assert.deepEqual(first.received(), seqs(firstHead));
    assert.equal(await storedCursor('siem'), firstHead, 'the cursor is in the database');

    const secondHead = await appendEvents(5);
    assert.ok(secondHead > firstHead);
    const second = recordingSink('siem');
    const d2 = delivery(await processStorage(), second.sink);
    d2.start();
    await waitFor('the second run to reach the new head', () => d2.status()[0]!.cursor === secondHead, 10_000);
    await d2.stop();
    assert.deepEqual(second.received(), seqs(secondHead, firstHead + 1), 'no gap, and nothing delivered before the stop is sent again');
    assert.equal(await storedCursor('siem'), secondHead);
  });

  test('after a restart, the only events sent twice are those of the batch whose acknowledgement was lost', async () => {
    const before = (await storedCursor('siem')) ?? 0;
    const head = await appendEvents(6);
    // The first batch reaches the collector but the answer is lost; a long backoff holds the loop until stop.
    const lossy = recordingSink('siem', (call) => call === 1);
    const d1 = delivery(await processStorage(), lossy.sink, 60_000);
    d1.start();
    await waitFor('the lost acknowledgement', () => d1.status()[0]!.state === 'backoff', 10_000);
    await d1.stop();
    assert.deepEqual(lossy.offered, [seqs(before + 4, before + 1)]);
    assert.equal(await storedCursor('siem'), before, 'an unacknowledged batch does not move the stored cursor');

    const next = recordingSink('siem');
    const d2 = delivery(await processStorage(), next.sink);
    d2.start();
    await waitFor('the restarted run to reach the head', () => d2.status()[0]!.cursor === head, 10_000);
    await d2.stop();
    assert.deepEqual(next.received(), seqs(head, before + 1), 'resumes at the unacknowledged batch: no gap');
    const duplicates = next.received().filter((seq) => lossy.received().includes(seq));
    assert.deepEqual(duplicates, lossy.offered[0], 'duplicates are exactly the unacknowledged batch');
  });
});
