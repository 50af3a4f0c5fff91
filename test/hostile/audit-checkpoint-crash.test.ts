import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type HttpResult, type ServerProcess } from '../helpers/server-process.ts';
import { stallWrite } from '../helpers/write-stall.ts';
import { runCliAt } from '../helpers/cli.ts';
import type { Storage } from '../../src/storage/database.ts';

/** Checkpoints every 100 ms, so each test waits for one rather than for a minute. */
const FAST = { KEYHOLD_AUDIT_CHECKPOINT_INTERVAL: '100ms' };
const POLL_MS = 20;

describeEachDialect('a signed audit checkpoint survives kill -9', (dialect) => {
  let database: TestDatabase;
  let storage: Storage;
  let server: ServerProcess;
  const start = async () => {
    server = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn', env: FAST });
  };
  const ok = (res: HttpResult, status = 200) => {
    assert.equal(res.status, status, res.text);
    return res.json;
  };

  before(async () => {
    database = await createTestDatabase(dialect);
    await start();
    storage = await database.open();
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await storage?.close();
    await database?.cleanup();
  });

  const lastEvent = () => storage.db.selectFrom('audit_events').select(['seq', 'action', 'context']).orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
  /** The key self-test the server runs as it starts has recorded its event, and (the checkpointer's own rule, checkpoints.ts) nothing but checkpoint events came after the newest checkpoint. */
  async function checkpointedToTheEnd(): Promise<boolean> {
    if (!(await storage.db.selectFrom('audit_events').select('seq').where('action', '=', 'system.self-test').executeTakeFirst())) return false;
    const newest = await storage.db.selectFrom('audit_checkpoints').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst();
    if (!newest) return false;
    const since = await storage.db.selectFrom('audit_events').select('seq').where('seq', '>', newest.seq).where('action', '<>', 'audit.checkpoint').limit(1).executeTakeFirst();
    return since === undefined;
  }
  const published = async () => (await storage.db.selectFrom('audit_events').select('context').where('action', '=', 'audit.checkpoint').execute())
    .map((e) => JSON.parse(e.context) as { seq: string; prevSeq: string });
  async function until(what: string, check: () => Promise<boolean>): Promise<void> {
    for (const deadline = Date.now() + 30_000; !(await check());) {
      if (Date.now() > deadline) throw new Error(`${what}: not within 30 s\n${server.logs().slice(-4000)}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  test('killed while a checkpoint is published: no checkpoint is left without its event, and the log verifies on the server and offline from an export', async () => {
    const { publicKey } = ok(await server.request('GET', '/v1/audit/public-key'));
    // Idle first, so the next checkpoint is the one this test makes due: the start's work done (its key
    // self-test runs beside the first checkpoint and may record its event after it) and checkpointed. A log
    // whose newest event was a checkpoint was not enough: the self-test's event could still come, the next
    // checkpoint then fell due before the POST, and the server stalled on it (SQLite: before the POST was served).
    await until('the start\'s events were never checkpointed', checkpointedToTheEnd);
    const stall = await stallWrite(database, { table: 'audit_events', when: "new.action = 'audit.checkpoint'", at: 1 });
    // Not awaited: the checkpoint can fall due before the answer is sent, and on SQLite the stall then
    // holds the very thread that would send it.
    const answer = server.request('POST', '/v1/secrets', { body: { name: 'CHECKPOINTED', owner: 'ops' } }).catch(() => null);
    try {
      // The secret commits with its event; its checkpoint is signed within 100 ms, and the server is held
      // writing the event that publishes it.
      await stall.reached(async () => (await storage.db.selectFrom('secrets').select('id').where('name', '=', 'CHECKPOINTED').executeTakeFirst()) !== undefined);
    } finally {
      assert.deepEqual(await server.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
      await answer;
      await stall.remove();
    }
    await start();
    const stored = (await storage.db.selectFrom('audit_checkpoints').select('seq').orderBy('seq').execute()).map((c) => c.seq);
    const carried = new Set((await published()).map((c) => Number(c.seq)));
    assert.deepEqual(stored.filter((seq) => !carried.has(seq)), [], 'every stored checkpoint has the event that publishes it');

    // The next checkpoint names the newest stored one as the one before; wait until it is published.
    ok(await server.request('PUT', '/v1/secrets/CHECKPOINTED/values/production', { body: { value: 'after the crash' } }));
    const written = (await lastEvent()).seq;
    await until('no checkpoint after the crash', async () => (await published()).some((c) => Number(c.seq) >= written));

    const verified = ok(await server.request('GET', '/v1/audit/verify'));
    assert.equal(verified.ok, true, JSON.stringify(verified));
    // What a sink's file holds: the events alone, their audit.checkpoint events the only checkpoints.
    const exported = await server.request('GET', '/v1/audit/export?allTenants=true&format=json');
    assert.equal(exported.status, 200, exported.text);
    const events = join(database.dataDir, 'events.jsonl');
    await writeFile(events, exported.text);
    const offline = await runCliAt(server.address, ['audit', 'verify', '--events', events, '--public-key', publicKey], { token: null });
    assert.equal(offline.code, 0, offline.stdout + offline.stderr);
  });
});
