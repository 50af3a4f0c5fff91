import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { appendFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createManualClock } from '../../../../platform/clock.ts';
import { createMemoryCursorStore } from '../../delivery-ports.ts';
import { createAuditDelivery } from '../../delivery.ts';
import type { AuditEvent } from '../../event.ts';
import { auditEvent, createMemoryAuditLog, seqs, waitFor } from '../testing.ts';
import { createJsonlSink } from './index.ts';
import { within } from '../../../../../test/helpers/deadline.ts';

const signal = () => new AbortController().signal;

async function readLines(path: string): Promise<string[]> {
  return (await readFile(path, 'utf8')).split('\n').filter((l) => l !== '');
}

describe('JSON-lines audit sink', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyhold-jsonl-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the file gets every event once, in order, one JSON object per line, and is created 0600', async () => {
    const path = join(dir, 'audit.jsonl');
    const log = createMemoryAuditLog();
    log.append(3);
    const sink = createJsonlSink({ name: 'file', path, node: 'node-a' });
    const cursors = createMemoryCursorStore();
    const delivery = createAuditDelivery({ source: log, sinks: [sink], cursors, clock: createManualClock(), timeoutMs: 1000, batchSize: 4, backoff: { baseMs: 5, maxMs: 20 } });
    delivery.start();
    await waitFor('first events', () => delivery.status()[0]!.cursor === 3);
    log.append(14, { outcome: 'denied', reason: 'FORBIDDEN' });
    delivery.poke(17);
    await waitFor('all events', () => delivery.status()[0]!.cursor === 17);
    await delivery.stop();

    const events = (await readLines(path)).map((l) => JSON.parse(l) as AuditEvent);
    assert.deepEqual(events.map((e) => e.seq), seqs(17));
    assert.deepEqual(events[4], log.events[4]);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(cursors.snapshot(), { [`file@node-a:${path}`]: 17 }, 'the cursor is keyed by node and path: the file is local to one node');
  });

  test('a line torn by a crash is cut off before the next batch, so every line is a whole event', async () => {
    const path = join(dir, 'torn.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([auditEvent(1)], signal());
    await sink.close!();
    await appendFile(path, '{"seq":2,"id":"evt_0000'); // a write cut short, never acknowledged
    const restarted = createJsonlSink({ name: 'file', path });
    assert.equal((await restarted.resumePoint!())?.seq, 1, 'the torn line does not count as held');
    await restarted.deliver([auditEvent(2), auditEvent(3)], signal());
    await restarted.close!();

    const text = await readFile(path, 'utf8');
    assert.deepEqual(text.split('\n').slice(0, -1).map((l) => (JSON.parse(l) as AuditEvent).seq), [1, 2, 3]);
    assert.ok(text.endsWith('\n'));
  });

  test('a file that is only a torn line holds nothing, and is emptied before the first write', async () => {
    const path = join(dir, 'only-torn.jsonl');
    await writeFile(path, '{"seq":1,"id":"evt');
    const sink = createJsonlSink({ name: 'file', path });
    assert.equal(await sink.resumePoint!(), null);
    await sink.deliver([auditEvent(1)], signal());
    await sink.close!();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1]);
  });

  test('a batch offered again (at least once) adds no line: the sink never writes a seq at or below the last in its file', async () => {
    const path = join(dir, 'again.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([auditEvent(1), auditEvent(2), auditEvent(3)], signal());
    await sink.deliver([auditEvent(2), auditEvent(3), auditEvent(4)], signal());
    await sink.deliver([auditEvent(3)], signal());
    await sink.close!();
    // A new process knows nothing but the file.
    const restarted = createJsonlSink({ name: 'file', path });
    await restarted.deliver([auditEvent(1), auditEvent(4), auditEvent(5)], signal());
    await restarted.close!();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), seqs(5));
  });

  test('a restarted delivery resumes from the file, not from a stale or shared cursor', async () => {
    const path = join(dir, 'resume.jsonl');
    const log = createMemoryAuditLog();
    log.append(9);
    const first = createJsonlSink({ name: 'file', path, node: 'n1' });
    await first.deliver(log.events.slice(0, 6), signal());
    await first.close!();
    // The stored cursor may be behind the file (a crash before it was saved) or ahead of it (the cursor an older
    // version shared between nodes): either way, the file decides.
    for (const [stored, what] of [[2, 'behind'], [8, 'ahead']] as const) {
      const cursors = createMemoryCursorStore({ [`file@n1:${path}`]: stored });
      const delivery = createAuditDelivery({ source: log, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors, clock: createManualClock(), timeoutMs: 1000, batchSize: 4, backoff: { baseMs: 5, maxMs: 20 } });
      delivery.start();
      await waitFor(`caught up (cursor ${what})`, () => delivery.status()[0]!.cursor === 9);
      await delivery.stop();
      assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), seqs(9), `cursor ${what} the file`);
      assert.equal(cursors.snapshot()[`file@n1:${path}`], 9);
    }
  });

  test('an empty file resumes from its own stored cursor; two nodes with the same path keep two cursors', async () => {
    const log = createMemoryAuditLog();
    log.append(5);
    const path = join(dir, 'shared-name.jsonl');
    const cursors = createMemoryCursorStore({ [`file@node-a:${path}`]: 5, file: 5 });
    const nodeB = createAuditDelivery({ source: log, sinks: [createJsonlSink({ name: 'file', path, node: 'node-b' })], cursors, clock: createManualClock(), timeoutMs: 1000, batchSize: 4, backoff: { baseMs: 5, maxMs: 20 } });
    nodeB.start();
    await waitFor('node B caught up', () => nodeB.status()[0]!.cursor === 5);
    await nodeB.stop();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), seqs(5), "node A's cursor (or the old shared one) is not node B's");
    assert.equal(cursors.snapshot()[`file@node-b:${path}`], 5);

    // A file rotated away while the node was stopped: the new, empty file starts where the node's cursor says.
    await rename(path, `${path}.1`);
    log.append(2);
    const again = createAuditDelivery({ source: log, sinks: [createJsonlSink({ name: 'file', path, node: 'node-b' })], cursors, clock: createManualClock(), timeoutMs: 1000, batchSize: 4, backoff: { baseMs: 5, maxMs: 20 } });
    again.start();
    await waitFor('node B caught up again', () => again.status()[0]!.cursor === 7);
    await again.stop();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [6, 7]);
  });

  test('a file copied from another log (a database restored from a backup, or started afresh) is refused loudly, not taken as held', async () => {
    const path = join(dir, 'other-log.jsonl');
    const old = createMemoryAuditLog();
    old.append(5);
    const first = createJsonlSink({ name: 'file', path, node: 'n1' });
    await first.deliver(old.events, signal());
    await first.close!();
    const written = await readFile(path, 'utf8');

    // The log the server now runs on is another one: behind the file, and with other events at the same seqs.
    const log = createMemoryAuditLog();
    log.append(3, { hash: 'b'.repeat(64) });
    const cursors = createMemoryCursorStore();
    const delivery = createAuditDelivery({ source: log, sinks: [createJsonlSink({ name: 'file', path, node: 'n1' })], cursors, clock: createManualClock(), timeoutMs: 1000, batchSize: 4, backoff: { baseMs: 5, maxMs: 20 } });
    delivery.start();
    try {
      await waitFor('the file refused', () => delivery.status()[0]!.consecutiveFailures >= 2);
      assert.match(delivery.status()[0]!.lastError ?? '', /holds event 5, but the log ends before it/);
      // The log passes the file's last seq, with events of its own: still not what the file holds.
      log.append(4, { hash: 'b'.repeat(64) });
      delivery.poke(7);
      const failures = delivery.status()[0]!.consecutiveFailures;
      await waitFor('refused again', () => delivery.status()[0]!.consecutiveFailures >= failures + 2);
      assert.match(delivery.status()[0]!.lastError ?? '', /holds event 5, but the log's event 5 is another/);
      assert.equal(await readFile(path, 'utf8'), written, 'nothing written into the other log\'s file');
      assert.deepEqual(cursors.snapshot(), {}, 'no cursor saved past events never written');

      // Moved aside, as the error says: the new file gets this log from its first event.
      await rename(path, `${path}.old`);
      await waitFor('caught up in a new file', () => delivery.status()[0]!.cursor === 7);
    } finally {
      await delivery.stop();
    }
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), seqs(7));
  });

  test('a file whose last line is not an audit event is left alone: the sink refuses to guess what it holds', async () => {
    const path = join(dir, 'foreign.jsonl');
    await writeFile(path, 'someone else wrote this\n');
    const sink = createJsonlSink({ name: 'file', path });
    await assert.rejects(sink.resumePoint!(), /last complete line is not an audit event/);
    await assert.rejects(sink.deliver([auditEvent(1)], signal()), /last complete line is not an audit event/);
    await sink.close!();
    assert.equal(await readFile(path, 'utf8'), 'someone else wrote this\n');
  });

  test('the last event is found behind lines longer than one read', async () => {
    const path = join(dir, 'long.jsonl');
    const big = (seq: number) => auditEvent(seq, { context: { userAgent: 'x'.repeat(150_000) } });
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([big(1), big(2)], signal());
    await sink.close!();
    await appendFile(path, JSON.stringify(big(3)).slice(0, 100_000));
    assert.deepEqual(await createJsonlSink({ name: 'file', path }).resumePoint!(), { seq: 2, hash: big(2).hash });
  });

  test('after log rotation renames the file, the next batch goes to a new file at the configured path', async () => {
    const path = join(dir, 'rotated.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([auditEvent(1)], signal());
    await rename(path, `${path}.1`);
    await sink.deliver([auditEvent(1), auditEvent(2)], signal()); // a batch offered again spans the rotation
    await sink.close!();

    assert.deepEqual((await readLines(`${path}.1`)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1]);
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [2], 'the new file starts where the old one ended');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  test('an already aborted delivery writes nothing and rejects', async () => {
    const path = join(dir, 'aborted.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    const controller = new AbortController();
    controller.abort(new Error('timed out'));
    await assert.rejects(sink.deliver([auditEvent(1)], controller.signal), /timed out/);
    await sink.close!();
    await assert.rejects(stat(path), { code: 'ENOENT' });
  });

  test('a write the file system never answers holds one batch: batches offered meanwhile are refused at once, not queued behind it', async () => {
    // A FIFO nobody reads stands for a hung mount: the write blocks in the kernel, and no signal can cancel it.
    const path = join(dir, 'hung.jsonl');
    execFileSync('mkfifo', [path]);
    const sink = createJsonlSink({ name: 'file', path });
    const huge = (seq: number) => auditEvent(seq, { context: { pad: 'x'.repeat(2_000_000) } });
    const settled = (p: Promise<unknown>, ms: number) => within(p.then(() => 'delivered', (e: Error) => e.message), ms, 'still waiting');
    // No deadline on the first: on a loaded machine opening the file could outlast a short one, and the
    // batch would be refused before its write began. The hang, not the signal, is what is under test.
    const stuck = sink.deliver([huge(1)], new AbortController().signal);
    try {
      assert.equal(await settled(stuck, 300), 'still waiting', 'the write hangs (delivery times it out from outside)');
      // What delivery does after each timeout: offer the batch again. Each one queued would be held until the hang ends.
      for (let retry = 0; retry < 3; retry++) {
        assert.match(await settled(sink.deliver([huge(1)], AbortSignal.timeout(50)), 300), /an earlier write .* has not finished/);
      }
    } finally {
      // End the hang: read the FIFO until the stuck write returns (its fsync then fails: a FIFO cannot be synced).
      const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
      const buffer = Buffer.alloc(1 << 16);
      while (await settled(stuck, 5) === 'still waiting') await reader.read(buffer, 0, buffer.length, null).catch(() => null);
      await reader.close();
      await sink.close!();
    }
  });

  test('after a failed fsync the sink acknowledges nothing more, not even the lines the failed batch left readable', async () => {
    // A FIFO cannot be synced: the write lands, the fsync fails, as a disk's writeback error would. Linux may then drop
    // those pages while reads still show them, and report the error once: a later fsync on a new descriptor succeeds.
    const path = join(dir, 'sync-failed.jsonl');
    execFileSync('mkfifo', [path]);
    const sink = createJsonlSink({ name: 'file', path });
    try {
      await assert.rejects(sink.deliver([auditEvent(1)], signal()), { code: 'EINVAL' });
      // What the page cache would show: the line, whole. Offered again, the batch must not pass for durable now.
      await rm(path);
      await writeFile(path, JSON.stringify(auditEvent(1)) + '\n');
      await assert.rejects(sink.deliver([auditEvent(1)], signal()), /fsync of .* failed .* until Keyhold is restarted/);
      await assert.rejects(sink.deliver([auditEvent(2)], signal()), /fsync of .* failed/);
      await assert.rejects(sink.resumePoint!(), /fsync of .* failed/);
      assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1], 'nothing more written');
    } finally {
      await sink.close!();
    }
    // A restarted sink (a new process) trusts the file again.
    const restarted = createJsonlSink({ name: 'file', path });
    await restarted.deliver([auditEvent(1), auditEvent(2)], signal());
    await restarted.close!();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1, 2]);
  });

  test('a file in a directory that does not exist fails the batch, and it succeeds once the directory exists', async () => {
    const path = join(dir, 'missing', 'audit.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await assert.rejects(sink.deliver([auditEvent(1)], signal()), { code: 'ENOENT' });
    await mkdir(join(dir, 'missing'));
    await sink.deliver([auditEvent(1)], signal());
    await sink.close!();
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1]);
  });
});
