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
