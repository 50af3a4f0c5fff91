import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../helpers/server-process.ts';

test('a dev server whose key file is damaged does not start, and says which file and what is wrong (exit 2)', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-dev-start-'));
  try {
    const first = await startServer({ dataDir, logLevel: 'error' });
    await first.stop();
    const keyFile = join(dataDir, 'dev-unseal.key');
    await writeFile(keyFile, Buffer.alloc(31, 1).toString('base64') + '\n');
    await assert.rejects(startServer({ dataDir, logLevel: 'error' }), (err: Error) =>
      /exited before listening \(2\)/.test(err.message)
      && err.message.includes(`keyhold cannot start: ${keyFile}: `) && /31 bytes, not 32/.test(err.message));
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

const PASSWORD = 'Pw-not-to-be-echoed';
const unopenable: Array<{ case: string; setting: string; env: (dataDir: string) => Record<string, string> }> = [
  { case: 'a PostgreSQL URL that does not parse', setting: 'KEYHOLD_DATABASE_URL', env: () => ({ KEYHOLD_DATABASE_URL: `postgres://keyhold:${PASSWORD}@127.0.0.1:99999/keyhold` }) },
  { case: 'a PostgreSQL server that is not there', setting: 'KEYHOLD_DATABASE_URL', env: () => ({ KEYHOLD_DATABASE_URL: `postgres://keyhold:${PASSWORD}@127.0.0.1:1/keyhold` }) },
  { case: 'a data directory below a file', setting: 'KEYHOLD_DATA_DIR', env: (dataDir) => ({ KEYHOLD_DATA_DIR: join(dataDir, 'a-file', 'data') }) },
];

for (const c of unopenable) {
  test(`${c.case} stops start-up with one line naming ${c.setting}, never the password`, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-dev-start-'));
    try {
      await writeFile(join(dataDir, 'a-file'), '');
      await assert.rejects(startServer({ dataDir, logLevel: 'error', env: c.env(dataDir) }), (err: Error) => {
        const [first, ...stderr] = err.message.split('\n');
        const lines = stderr.filter((l) => l.trim() !== '');
        assert.match(first!, /exited before listening \(1\)/);
        assert.equal(lines.length, 1, err.message);
        assert.match(lines[0]!, new RegExp(`^keyhold cannot start: ${c.setting}: the database cannot be opened: \\S`));
        assert.doesNotMatch(err.message, new RegExp(PASSWORD));
        return true;
      });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
}
