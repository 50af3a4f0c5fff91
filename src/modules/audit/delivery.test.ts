import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createManualClock } from '../../platform/clock.ts';
import { backoffDelay, createMemoryCursorStore, type AuditEventSource, type SinkCursorStore } from './delivery-ports.ts';
import { createAuditDelivery, type AuditDeliveryOptions } from './delivery.ts';
import type { AuditEvent, AuditSink } from './event.ts';
import { auditEvent, createMemoryAuditLog, seqs, waitFor } from './sinks/testing.ts';

type Behaviour = 'ok' | 'fail' | 'ack-lost' | 'hang' | 'hang-deaf';

/** A sink that records every batch offered to it; `behave` decides each call (1-based). */
function recordingSink(name: string, behave: (call: number, batch: readonly AuditEvent[]) => Behaviour = () => 'ok') {
  const offered: number[][] = [];
  const acknowledged: number[] = [];
  let closed = 0;
  const sink: AuditSink = {
    name,
    async deliver(events, signal) {
      offered.push(events.map((e) => e.seq));
      const b = behave(offered.length, events);
      if (b === 'ok') return void acknowledged.push(...events.map((e) => e.seq));
      if (b === 'fail') throw new Error('collector said no');
      // Received and kept by the far side, but the acknowledgement never came back.
      if (b === 'ack-lost') throw new Error('connection reset before the answer');
      if (b === 'hang-deaf') return new Promise<void>(() => {}); // ignores its signal too
      return new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    },
    async close() {
      closed++;
    },
  };
  return { sink, offered, acknowledged, closed: () => closed };
}

function options(over: Partial<AuditDeliveryOptions> & Pick<AuditDeliveryOptions, 'source' | 'sinks'>): AuditDeliveryOptions {
  return {
    cursors: createMemoryCursorStore(),
    clock: createManualClock(),
    timeoutMs: 1000,
    batchSize: 3,
    backoff: { baseMs: 5, maxMs: 20, random: () => 0 },
    ...over,
  };
}

describe('audit delivery', () => {
  test('a stopped and restarted delivery resumes from the persisted cursor; only the unacknowledged batch is sent twice', async () => {
    const log = createMemoryAuditLog();
    const cursors = createMemoryCursorStore();
    log.append(5);

    const first = recordingSink('siem');
    const d1 = createAuditDelivery(options({ source: log, sinks: [first.sink], cursors }));
    d1.start();
    await waitFor('first five', () => d1.status()[0]!.cursor === 5);
    await d1.stop();
    assert.equal(first.closed(), 1);
    assert.deepEqual(cursors.snapshot(), { siem: 5 });

    log.append(3);
    const second = recordingSink('siem', () => 'ack-lost');
    const d2 = createAuditDelivery(options({ source: log, sinks: [second.sink], cursors, backoff: { baseMs: 60_000, maxMs: 60_000 } }));
    d2.start();
    await waitFor('the batch with lost acknowledgement', () => d2.status()[0]!.state === 'backoff');
    await d2.stop(); // returns at once although the loop sat in a one-minute backoff
    assert.deepEqual(second.offered, [[6, 7, 8]]);
    assert.deepEqual(cursors.snapshot(), { siem: 5 });

    const third = recordingSink('siem');
    const d3 = createAuditDelivery(options({ source: log, sinks: [third.sink], cursors }));
    d3.start();
    await waitFor('the rest', () => d3.status()[0]!.cursor === 8);
    await d3.stop();
    assert.deepEqual(third.offered, [[6, 7, 8]]);
    assert.deepEqual([...first.acknowledged, ...third.acknowledged], seqs(8));
  });

  test('the same delivery can be stopped and started again and carries on from its cursor', async () => {
    const log = createMemoryAuditLog();
    log.append(4);
    const rec = recordingSink('file');
    const delivery = createAuditDelivery(options({ source: log, sinks: [rec.sink] }));
    delivery.start();
    await waitFor('four', () => delivery.status()[0]!.cursor === 4);
    await delivery.stop();
    assert.equal(delivery.status()[0]!.state, 'stopped');
    log.append(2);
    delivery.start();
    await waitFor('six', () => delivery.status()[0]!.cursor === 6);
    await delivery.stop();
    assert.deepEqual(rec.acknowledged, seqs(6));
  });

  test('a sink that ignores its abort signal and never settles is still timed out and retried', async () => {
    const log = createMemoryAuditLog();
    log.append(2);
    const rec = recordingSink('deaf', (call) => (call <= 2 ? 'hang-deaf' : 'ok'));
    const delivery = createAuditDelivery(options({ source: log, sinks: [rec.sink], timeoutMs: 30 }));
    delivery.start();
    await waitFor('delivered after two timeouts', () => delivery.status()[0]!.cursor === 2);
    await delivery.stop();
    assert.deepEqual(rec.offered, [[1, 2], [1, 2], [1, 2]]);
    assert.match(delivery.status()[0]!.lastError ?? '', /timed out after 30 ms/);
  });

  test('a failing sink does not hold up the others, and each keeps its own cursor', async () => {
    const log = createMemoryAuditLog();
    log.append(7);
    const healthy = recordingSink('file');
    const broken = recordingSink('siem', () => 'fail');
    const cursors = createMemoryCursorStore();
    const delivery = createAuditDelivery(options({ source: log, sinks: [healthy.sink, broken.sink], cursors }));
    delivery.start();
    delivery.poke(7); // the writer announces the head, so the stuck sink's lag counts every event
    await waitFor('healthy caught up', () => delivery.status()[0]!.cursor === 7);
    await waitFor('broken retried', () => delivery.status()[1]!.consecutiveFailures >= 3);
    await delivery.stop();
    const [file, siem] = delivery.status();
    assert.deepEqual(healthy.acknowledged, seqs(7));
    assert.ok(broken.offered.every((batch) => batch.join() === '1,2,3'), 'a failed batch is offered again, never skipped');
    assert.equal(file!.lag, 0);
    assert.equal(siem!.cursor, 0);
    assert.equal(siem!.lag, 7);
    assert.equal(siem!.lastError, 'collector said no');
    assert.deepEqual(cursors.snapshot(), { file: 7 });
  });

  test('failures of the log or the cursor store are retried and never skip or lose events', async () => {
    const log = createMemoryAuditLog();
    log.append(6);
    let readFailures = 2;
    const flakySource: AuditEventSource = {
      async readAfter(seq, limit) {
        if (readFailures-- > 0) throw new Error('database is restarting');
        return log.readAfter(seq, limit);
      },
    };
    const store = createMemoryCursorStore();
    let getFailures = 1;
    let setFailures = 1;
    const flakyCursors: SinkCursorStore = {
      async get(sink) {
        if (getFailures-- > 0) throw new Error('cursor table locked');
        return store.get(sink);
      },
      async set(sink, seq) {
        if (setFailures-- > 0) throw new Error('cursor table locked');
        return store.set(sink, seq);
      },
    };
    const rec = recordingSink('file');
    const delivery = createAuditDelivery(options({ source: flakySource, sinks: [rec.sink], cursors: flakyCursors }));
    delivery.start();
    await waitFor('all six', () => delivery.status()[0]!.cursor === 6 && store.snapshot().file === 6);
    await delivery.stop();
    assert.deepEqual(rec.acknowledged, seqs(6), 'a batch whose cursor write failed is not sent again by the same process');
    assert.equal(delivery.status()[0]!.consecutiveFailures, 0);
  });

  test('a row written by hand past the head is not delivered: the events the server writes up to it still all arrive', async () => {
    const log = createMemoryAuditLog();
    log.append(2);
    log.events.push(auditEvent(1000));
    const rec = recordingSink('file');
    const delivery = createAuditDelivery(options({ source: log, sinks: [rec.sink], pollMs: 20 }));
    delivery.start();
    await waitFor('the first two', () => delivery.status()[0]!.cursor === 2);
    log.events.splice(2, 0, ...Array.from({ length: 4 }, (_, i) => auditEvent(3 + i)));
    delivery.poke(6);
    await waitFor('the next four', () => delivery.status()[0]!.cursor === 6);
    await delivery.stop();
    assert.deepEqual(rec.acknowledged, seqs(6), 'the cursor never jumped to 1000');
    assert.equal(delivery.status()[0]!.consecutiveFailures, 0);
  });

  test('poke wakes an idle loop at once; without a poke the loop still polls', async () => {
    const log = createMemoryAuditLog();
    const rec = recordingSink('file');
    const delivery = createAuditDelivery(options({ source: log, sinks: [rec.sink], pollMs: 60_000 }));
    delivery.start();
    await waitFor('idle', () => delivery.status()[0]!.state === 'idle');
    log.append(2);
    delivery.poke(2);
    await waitFor('poked delivery', () => delivery.status()[0]!.cursor === 2, 10_000); // far below the 60 s poll
    await delivery.stop();

    const polled = createAuditDelivery(options({ source: log, sinks: [recordingSink('other').sink], pollMs: 20 }));
    polled.start();
    await waitFor('first read', () => polled.status()[0]!.cursor === 2);
    log.append(1);
    await waitFor('polled delivery', () => polled.status()[0]!.cursor === 3, 3000); // below the default 5 s poll
    await polled.stop();
  });

  test('stop lets an in-flight batch finish before it returns, then closes the sinks', async () => {
    const log = createMemoryAuditLog();
    log.append(1);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const acknowledged: number[] = [];
    let closed = false;
    const sink: AuditSink = {
      name: 'slow',
      async deliver(events) {
        await gate;
        acknowledged.push(...events.map((e) => e.seq));
      },
      async close() {
        closed = true;
      },
    };
    const cursors = createMemoryCursorStore();
    const delivery = createAuditDelivery(options({ source: log, sinks: [sink], cursors }));
    delivery.start();
    await waitFor('delivering', () => delivery.status()[0]!.state === 'delivering');
    const stopping = delivery.stop();
    assert.throws(() => delivery.start(), /stopping/);
    release();
    await stopping;
    assert.deepEqual(acknowledged, [1]);
    assert.deepEqual(cursors.snapshot(), { slow: 1 });
    assert.equal(closed, true);
  });

  test('sinks must have distinct names, since the name keys the cursor', () => {
    const log = createMemoryAuditLog();
    assert.throws(() => createAuditDelivery(options({ source: log, sinks: [recordingSink('a').sink, recordingSink('a').sink] })), /two audit sinks are named "a"/);
    const keyed = (key: string): AuditSink => ({ ...recordingSink('file').sink, cursorKey: key });
    assert.throws(() => createAuditDelivery(options({ source: log, sinks: [keyed('file@n:/a'), keyed('file@n:/a')] })), /share the cursor "file@n:\/a"/);
    assert.doesNotThrow(() => createAuditDelivery(options({ source: log, sinks: [keyed('file@n:/a'), keyed('file@n:/b')] })));
  });

  test('a sink that can read what it holds resumes after it, not from the stored cursor, and a failed read is retried', async () => {
    const log = createMemoryAuditLog();
    log.append(8);
    const cursors = createMemoryCursorStore({ 'file@n:/a': 2 });
    const rec = recordingSink('file');
    let reads = 0;
    const sink: AuditSink = { ...rec.sink, cursorKey: 'file@n:/a', resumePoint: async () => {
      if (++reads === 1) throw new Error('EACCES');
      return { seq: 5, hash: log.events[4]!.hash };
    } };
    const d = createAuditDelivery(options({ source: log, sinks: [sink], cursors }));
    d.start();
    await waitFor('caught up', () => d.status()[0]!.cursor === 8);
    await d.stop();
    assert.deepEqual(rec.offered.flat(), [6, 7, 8], 'nothing the sink already holds is offered again');
    assert.match(d.status()[0]!.lastError!, /reading what the sink already holds failed: EACCES/);
    assert.deepEqual(cursors.snapshot(), { 'file@n:/a': 8 });
  });

  test('backoff doubles per failure up to the cap, and jitter only shortens it', () => {
    const plain = { baseMs: 100, maxMs: 1000, random: () => 0 };
    assert.deepEqual([1, 2, 3, 4, 5, 50].map((n) => backoffDelay(n, plain)), [100, 200, 400, 800, 1000, 1000]);
    assert.equal(backoffDelay(3, { ...plain, random: () => 0.999999 }), 200); // default jitter 0.5: 400 * (1 - 0.5)
    assert.equal(backoffDelay(3, { ...plain, jitter: 1, random: () => 0.5 }), 200);
    assert.equal(backoffDelay(3, { ...plain, jitter: 0, random: () => 0.9 }), 400);
  });
});
