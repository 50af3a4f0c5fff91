import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEV_KEY_FILE, DevKeyFileError } from '../../crypto/root/dev/index.ts';
import { DEV_ROOT_TOKEN_FILE } from './system-service.ts';
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

  test('a key file that holds no root key stops start-up with an error naming the file and what is wrong with it', async () => {
    const file = join(database.dataDir, DEV_KEY_FILE);
    const key = await readFile(file, 'utf8');
    try {
      for (const [text, problem] of [
        [Buffer.alloc(16, 7).toString('base64'), /16 bytes, not 32/],
        ['', /empty/],
        ['not base64 at all!', /not base64/],
      ] as const) {
        await writeFile(file, text + '\n');
        services.seal.seal();
        await assert.rejects(services.system.unsealFromDevKey(),
          (err: Error) => err instanceof DevKeyFileError && err.message.startsWith(`${file}: `) && problem.test(err.message), text);
        assert.equal(services.seal.isSealed(), true);
      }
    } finally {
      await writeFile(file, key);
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

  // A data directory left from an earlier server (or written into by someone else) may already hold these names.
  for (const [what, plant] of [
    ['a link planted at its name is replaced, not written through', (file: string, elsewhere: string) => symlink(elsewhere, file)],
    ['a file already at its name, readable by others, is replaced by one only the owner reads', (file: string) => writeFile(file, 'old\n', { mode: 0o644 })],
  ] as const) {
    test(`the root token file: ${what}`, async () => {
      const database = await createTestDatabase(dialect);
      const storage = await database.open();
      const dataDir = join(database.dataDir, 'dev-data');
      const elsewhere = join(database.dataDir, 'elsewhere');
      await mkdir(dataDir, { mode: 0o700 });
      await writeFile(elsewhere, 'untouched\n', { mode: 0o644 });
      await plant(join(dataDir, DEV_ROOT_TOKEN_FILE), elsewhere);
      try {
        const services = createServices({
          config: { dataDir, limits: loadConfig({}).limits, rollbackWindowMs: 86_400_000, identity: identitySettings() },
          storage, clock: createManualClock(Date.UTC(2026, 5, 1)),
        });
        const { rootToken } = await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
        assert.equal(await readFile(elsewhere, 'utf8'), 'untouched\n', 'nothing written through the link');
        const file = await lstat(join(dataDir, DEV_ROOT_TOKEN_FILE));
        assert.deepEqual([file.isFile(), file.mode & 0o777], [true, 0o600]);
        assert.equal(await readFile(join(dataDir, DEV_ROOT_TOKEN_FILE), 'utf8'), `${rootToken}\n`);
        // The key file beside it: whole (a root key, 32 bytes), and only the owner's.
        const key = await lstat(join(dataDir, DEV_KEY_FILE));
        assert.deepEqual([key.isFile(), key.mode & 0o777], [true, 0o600]);
        assert.equal(Buffer.from((await readFile(join(dataDir, DEV_KEY_FILE), 'utf8')).trim(), 'base64').length, 32);
        assert.deepEqual((await readdir(dataDir)).sort(), [DEV_ROOT_TOKEN_FILE, DEV_KEY_FILE], 'no temporary file left beside them');
      } finally {
        await storage.close();
        await database.cleanup();
      }
    });
  }
});
