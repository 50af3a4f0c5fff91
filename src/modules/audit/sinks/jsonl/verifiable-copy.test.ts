import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeEachDialect } from '../../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../../test/helpers/harness.ts';
import { verifyExportFiles } from '../../../../cli/commands/audit-offline.ts';
import type { SinkCursorStore } from '../../delivery-ports.ts';
import { createAuditDelivery } from '../../delivery.ts';
import { createDbCursorStore } from '../../streaming.ts';
import { seqs, waitFor } from '../testing.ts';
import { createJsonlSink } from './index.ts';

const opts = { timeoutMs: 1000, batchSize: 200, backoff: { baseMs: 5, maxMs: 20 }, pollMs: 20 };
/** Polled every 20 ms, so only a bound for a CI machine whose disk PostgreSQL keeps busy (each batch is fsynced). */
const CAUGHT_UP_MS = 20_000;
const seqsIn = async (path: string) =>
  (await readFile(path, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { seq: number }).seq);

/**
 * The JSON lines sink's file as docs/audit.md promises it: a copy of the log that verifies offline on
 * its own, over the real durable log and database cursors, through crashes, several nodes and rotation.
 */
describeEachDialect('the JSON lines sink file is a verifiable copy of the log', (dialect) => {
  let h: Harness;
  let dir: string;
  let key: string;
  let head: number;
  const headSeq = async () => (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;

  before(async () => {
    h = await createHarness(dialect);
    dir = await mkdtemp(join(tmpdir(), 'keyhold-sink-copy-'));
    await h.services.secrets.create(h.ctx, { name: 'SINKED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SINKED', 'production', { value: 'sink-canary-1' });
    await h.services.checkpoints.checkpoint();
    await h.services.values.read(h.ctx, 'SINKED', 'production');
    key = h.services.checkpoints.publicKey();
    head = await headSeq();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await h.close();
  });

  test('a crash between the file sync and the cursor save resends nothing: the file holds each event once and verifies offline', async () => {
    await h.storage.db.deleteFrom('audit_cursors').execute();
    const path = join(dir, 'crash.jsonl');
    const db = createDbCursorStore(h.storage.db);
    // The process dies right after the sink acknowledged: the cursor never reaches the database.
    const dying: SinkCursorStore = { get: db.get, set: async () => { throw new Error('process killed'); } };
    const first = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors: dying, clock: h.clock });
    first.start();
    await waitFor('first delivery', () => first.status()[0]!.delivered >= head, CAUGHT_UP_MS);
    await first.stop();
    assert.equal(await db.get(`file@n1:${path}`), 0, 'the cursor was never saved');

    const second = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors: db, clock: h.clock });
    second.start();
    await waitFor('restarted delivery caught up', () => second.status()[0]!.cursor >= head, CAUGHT_UP_MS);
    await second.stop();

    assert.equal(second.status()[0]!.delivered, 0, 'the restart resumed from the file, not from the stale cursor');
    assert.deepEqual(await seqsIn(path), seqs(head));
    const r = await verifyExportFiles({ events: path, checkpoints: null }, key);
    assert.equal(r.ok, true, `the sink's own file fails offline verification: ${r.problem}`);
    assert.deepEqual([r.firstSeq, r.lastSeq, r.duplicates, r.checkpoints], [1, head, 0, 1]);
  });

  test('two nodes with the same file setting keep their own cursors: a node started after another gets every event in its file', async () => {
    await h.storage.db.deleteFrom('audit_cursors').execute();
    const cursors = createDbCursorStore(h.storage.db);
    const path = join(dir, 'audit.jsonl');
    const nodeA = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'node-a' })], cursors, clock: h.clock });
    nodeA.start();
    await waitFor('node A caught up', () => nodeA.status()[0]!.cursor >= head, CAUGHT_UP_MS);
    await nodeA.stop();
    await rename(path, join(dir, 'node-a.jsonl')); // node A's disk is not node B's

    // Node B: same KEYHOLD_AUDIT_FILE, same sink name, same database, its own (empty) disk.
    const nodeB = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'node-b' })], cursors, clock: h.clock });
    nodeB.start();
    await waitFor('node B caught up', () => nodeB.status()[0]!.cursor >= head, CAUGHT_UP_MS);
    await nodeB.stop();

    assert.deepEqual(await seqsIn(path), seqs(head), "node B's file is missing the events node A delivered");
    assert.deepEqual(await seqsIn(join(dir, 'node-a.jsonl')), seqs(head));
    const rows = await h.storage.db.selectFrom('audit_cursors').select(['sink', 'seq']).orderBy('sink').execute();
    assert.deepEqual(rows.map((r) => [r.sink, Number(r.seq)]), [[`file@node-a:${path}`, head], [`file@node-b:${path}`, head]]);
    assert.equal((await verifyExportFiles({ events: path, checkpoints: null }, key)).ok, true);
  });

  test('after log rotation, the new file starts where the old one ended and verifies offline from the checkpoint it carries', async () => {
    await h.storage.db.deleteFrom('audit_cursors').execute();
    const path = join(dir, 'rotated.jsonl');
    const cursors = createDbCursorStore(h.storage.db);
    const d = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path })], cursors, clock: h.clock });
    d.start();
    await waitFor('caught up', () => d.status()[0]!.cursor >= head, CAUGHT_UP_MS);
    await rename(path, `${path}.1`); // logrotate
    await h.services.values.write(h.ctx, 'SINKED', 'production', { value: 'sink-canary-2' });
    await h.services.checkpoints.checkpoint();
    await h.services.values.read(h.ctx, 'SINKED', 'production');
    const now = await headSeq();
    d.poke(now);
    await waitFor('rotated file written', () => d.status()[0]!.cursor >= now, CAUGHT_UP_MS);
    await d.stop();

    const old = await seqsIn(`${path}.1`);
    const current = await seqsIn(path);
    assert.deepEqual([...old, ...current], seqs(now), 'together the two files hold every event once');
    assert.equal(current[0], old.at(-1)! + 1);
    assert.equal((await verifyExportFiles({ events: path, checkpoints: null }, key)).ok, false, 'without --partial, a missing head is a removal');
    const r = await verifyExportFiles({ events: path, checkpoints: null }, key, { partial: true });
    assert.equal(r.ok, true, `the current sink file fails offline verification: ${r.problem}`);
    assert.equal(r.firstSeq, current[0], 'the answer says the file does not start at 1');
    assert.equal(r.checkpoints, 1, 'the checkpoint inside the rotated file is proved against it');
    const signed = await h.storage.db.selectFrom('audit_checkpoints').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirstOrThrow();
    assert.equal(r.unsigned, now - Number(signed.seq));
    const rotatedAway = await verifyExportFiles({ events: `${path}.1`, checkpoints: null }, key);
    assert.deepEqual([rotatedAway.ok, rotatedAway.firstSeq], [true, 1]);
  });

  test('a file kept while the database is replaced (a restore, a fresh start) is refused, never resumed; moved aside, the new log is written from event 1', async () => {
    const path = join(dir, 'replaced.jsonl');
    const d = createAuditDelivery({ ...opts, source: h.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors: createDbCursorStore(h.storage.db), clock: h.clock });
    d.start();
    await waitFor('caught up', () => d.status()[0]!.cursor >= head, CAUGHT_UP_MS);
    await d.stop();
    const written = await readFile(path, 'utf8');

    const fresh = await createHarness(dialect);
    try {
      await fresh.storage.db.deleteFrom('audit_cursors').execute();
      const cursors = createDbCursorStore(fresh.storage.db);
      const again = createAuditDelivery({ ...opts, source: fresh.services.audit, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors, clock: fresh.clock });
      again.start();
      try {
        await waitFor('the file refused', () => again.status()[0]!.consecutiveFailures >= 2, CAUGHT_UP_MS);
        assert.match(again.status()[0]!.lastError ?? '', /the sink holds event \d+, but .*: its copy is not of this log/);
        assert.equal(await readFile(path, 'utf8'), written, 'nothing of the new log is written after the old one');
        assert.equal(await cursors.get(`file@n1:${path}`), 0, 'no cursor saved past events never written');
        await rename(path, `${path}.before-restore`);
        const now = (await fresh.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
        await waitFor('the new log in a new file', () => again.status()[0]!.cursor >= now, CAUGHT_UP_MS);
      } finally {
        await again.stop();
      }
      const r = await verifyExportFiles({ events: path, checkpoints: null }, fresh.services.checkpoints.publicKey());
      assert.deepEqual([r.ok, r.firstSeq], [true, 1], r.problem ?? '');
    } finally {
      await fresh.close();
    }
  });
});
