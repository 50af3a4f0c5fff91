import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createManualClock } from '../../../../platform/clock.ts';
import { createMemoryCursorStore } from '../../delivery-ports.ts';
import { createAuditDelivery } from '../../delivery.ts';
import type { AuditEvent } from '../../event.ts';
import { auditEvent, createMemoryAuditLog, seqs, waitFor } from '../testing.ts';
import { createJsonlSink } from './index.ts';

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
    const sink = createJsonlSink({ name: 'file', path });
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
    assert.deepEqual(cursors.snapshot(), { file: 17 });
  });

  test('a line torn by a crash is ended before the next batch, so every event still parses', async () => {
    const path = join(dir, 'torn.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([auditEvent(1)], signal());
    await appendFile(path, '{"seq":2,"id":"evt_0000'); // a write cut short
    await sink.deliver([auditEvent(2), auditEvent(3)], signal());
    await sink.close!();

    const lines = await readLines(path);
    assert.equal(lines.length, 4);
    const parsed = lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as AuditEvent];
      } catch {
        return [];
      }
    });
    assert.deepEqual(parsed.map((e) => e.seq), [1, 2, 3]);
  });

  test('after log rotation renames the file, the next batch goes to a new file at the configured path', async () => {
    const path = join(dir, 'rotated.jsonl');
    const sink = createJsonlSink({ name: 'file', path });
    await sink.deliver([auditEvent(1)], signal());
    await rename(path, `${path}.1`);
    await sink.deliver([auditEvent(2)], signal());
    await sink.close!();

    assert.deepEqual((await readLines(`${path}.1`)).map((l) => (JSON.parse(l) as AuditEvent).seq), [1]);
    assert.deepEqual((await readLines(path)).map((l) => (JSON.parse(l) as AuditEvent).seq), [2]);
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
