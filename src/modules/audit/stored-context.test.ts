import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/databases.ts';
import type { Storage } from '../../storage/database.ts';
import { createAuditLog, type AuditInput } from './audit-log.ts';

/** A request's source as services carry it: optional fields, which TypeScript lets into a Record<string, string>. */
interface Source { requestId: string; sourceIp?: string; userAgent?: string }

describeEachDialect('an event\'s hash covers its context as stored', (dialect) => {
  let database: TestDatabase;
  let storage: Storage;
  before(async () => {
    database = await createTestDatabase(dialect);
    storage = await database.open();
  });
  after(async () => {
    await storage.close();
    await database.cleanup();
  });

  test('a context field left undefined is neither hashed nor stored: the log still verifies', async () => {
    const log = createAuditLog({ db: storage.db, clock: { now: () => Date.UTC(2026, 5, 1) } });
    const source: Source = { requestId: 'r-1', sourceIp: undefined, userAgent: 'agent' };
    const input: AuditInput = { tenantId: null, actor: { type: 'system', id: 'test' }, action: 'test.event', resource: { type: 'test', id: null, name: null }, outcome: 'allowed', context: { ...source } };
    await storage.db.transaction().execute((trx) => log.appendInTx(trx, [input]));
    await log.record([input]);
    const stored = await storage.db.selectFrom('audit_events').select('context').orderBy('seq').execute();
    assert.deepEqual(stored.map((r) => JSON.parse(r.context)), [{ requestId: 'r-1', userAgent: 'agent' }, { requestId: 'r-1', userAgent: 'agent' }]);
    const r = await log.verify();
    assert.equal(r.ok, true, r.ok ? '' : r.problem);
  });
});
