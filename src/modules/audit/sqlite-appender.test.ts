import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase } from '../../../test/helpers/databases.ts';
import type { AuditInput } from './audit-log.ts';
import { createSqliteAppender } from './sqlite-appender.ts';

const input: AuditInput = { tenantId: null, actor: { type: 'system', id: 'keyhold' }, action: 'test.event', resource: { type: 'test', id: null, name: null }, outcome: 'allowed' };

test('a worker that dies fails only the appends sent to it, not those of the worker started after it', async () => {
  const database = await createTestDatabase('sqlite');
  try {
    const ready = join(database.dataDir, 'keyhold.db');
    await (await database.open()).close();
    // The first worker cannot open its file; the one started after it can.
    const path = join(database.dataDir, 'later', 'keyhold.db');
    const appender = createSqliteAppender({ path });
    try {
      let second: Promise<unknown> | null = null;
      const first = appender.append(1, [input], null).then(
        () => assert.fail('the first worker never opened its database'),
        () => {
          // The first worker failed (its 'error'); its 'exit' is still to come.
          mkdirSync(join(database.dataDir, 'later'));
          renameSync(ready, path);
          second = appender.append(2, [input], null);
        },
      );
      await first;
      const segment = await second! as { first: number; last: number; prevHash: string };
      assert.deepEqual([segment.first, segment.last, segment.prevHash], [1, 1, '0'.repeat(64)]);
    } finally {
      await appender.close();
    }
  } finally {
    await database.cleanup();
  }
});
