import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStorage } from '../database.ts';

test('the SQLite database and its WAL are owner-only, whatever the umask and the directory', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-mode-'));
  const previous = process.umask(0o022);
  try {
    const path = join(dir, 'keyhold.db');
    const storage = await openStorage({ url: `sqlite:${path}` });
    try {
      await storage.db.insertInto('system_meta').values({ key: 'mode-test', value: 'x' }).execute();
      for (const file of [path, `${path}-wal`]) assert.equal((await stat(file)).mode & 0o777, 0o600, file);
    } finally {
      await storage.close();
    }
  } finally {
    process.umask(previous);
    await rm(dir, { recursive: true, force: true });
  }
});
