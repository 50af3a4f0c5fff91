import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEV_KEY_FILE } from '../../crypto/root/dev/index.ts';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/databases.ts';
import { identitySettings, loadConfig } from '../../config/config.ts';
import { createServices, type Services } from '../../main/compose.ts';
import { createManualClock } from '../../platform/clock.ts';
import type { Storage } from '../../storage/database.ts';

/** Dev mode unseals itself at start-up from its key file: an unseal like any other, so an event first. */
describeEachDialect('dev-mode unseal at start-up', (dialect) => {
  let database: TestDatabase;
  let storage: Storage;
  let services: Services;
  before(async () => {
    database = await createTestDatabase(dialect);
    storage = await database.open();
    services = createServices({
      config: { dataDir: database.dataDir, limits: loadConfig({}).limits, rollbackWindowMs: 86_400_000, identity: identitySettings() },
      storage, clock: createManualClock(Date.UTC(2026, 5, 1)),
    });
    await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
  });
  after(async () => {
    await storage.close();
    await database.cleanup();
  });
  const unseals = () => storage.db.selectFrom('audit_events').select(['outcome', 'context']).where('action', '=', 'system.unseal').orderBy('seq').execute();

  test('records system.unseal (method dev-key) and only then opens', async () => {
    services.seal.seal();
    const before = (await unseals()).length;
    const record = services.audit.record;
    let sealedWhileRecording: boolean | null = null;
    services.audit.record = async (inputs) => {
      await record(inputs);
      sealedWhileRecording = services.seal.isSealed();
    };
    try {
      assert.equal(await services.system.unsealFromDevKey(), true);
    } finally {
      services.audit.record = record;
    }
    assert.equal(sealedWhileRecording, true, 'not open before the event is durable');
    assert.equal(services.seal.isSealed(), false);
    const events = await unseals();
    assert.equal(events.length, before + 1);
    assert.deepEqual([events.at(-1)!.outcome, JSON.parse(events.at(-1)!.context)], ['allowed', { method: 'dev-key', sealed: 'false' }]);
  });

  test('with the audit log broken, start-up fails and the server stays sealed', async () => {
    services.seal.seal();
    await sql`alter table audit_events rename to audit_events_gone`.execute(storage.db);
    try {
      await assert.rejects(services.system.unsealFromDevKey(), (err: { code?: string }) => err.code === 'AUDIT_UNAVAILABLE');
      assert.equal(services.seal.isSealed(), true);
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(storage.db);
    }
    assert.equal(await services.system.unsealFromDevKey(), true);
  });

  test('has no shares to generate a root token from: its root token is in the data directory', async () => {
    const source = { requestId: 'test', sourceIp: '127.0.0.1' };
    await assert.rejects(services.rootGeneration.start(source), (err: { code?: string; message: string }) => err.code === 'VALIDATION_FAILED' && /dev-mode/.test(err.message));
    assert.equal((await services.rootGeneration.status()).started, false);
  });
});

describeEachDialect('dev-mode init', (dialect) => {
  test('an init whose key file cannot be written commits nothing (the key would be lost), and can be retried', async () => {
    const database = await createTestDatabase(dialect);
    const storage = await database.open();
    // A file where the data directory should be: nothing can be written into it (even by root).
    const dataDir = join(database.dataDir, 'dev-data');
    await writeFile(dataDir, 'not a directory');
    try {
      const services = createServices({
        config: { dataDir, limits: loadConfig({}).limits, rollbackWindowMs: 86_400_000, identity: identitySettings() },
        storage, clock: createManualClock(Date.UTC(2026, 5, 1)),
      });
      await assert.rejects(services.system.initialize({ type: 'dev', shares: 1, threshold: 1 }));
      assert.equal((await services.system.status()).initialized, false, 'not initialised with a key nobody has');
      assert.equal((await storage.db.selectFrom('system_meta').select('key').execute()).length, 0);
      await rm(dataDir);
      await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
      assert.deepEqual((await readdir(dataDir)).sort(), ['dev-root-token', DEV_KEY_FILE], 'the key file under its name, nothing left beside it');
      services.seal.seal();
      assert.equal(await services.system.unsealFromDevKey(), true);
    } finally {
      await storage.close();
      await database.cleanup();
    }
  });
});
