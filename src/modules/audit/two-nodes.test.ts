import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { Storage } from '../../storage/database.ts';
import { createAuditLog, type AuditInput, type AuditLog } from './audit-log.ts';
import { createCheckpointer, type Checkpointer } from './checkpoints.ts';
import { createSqliteAppender, type AuditAppender } from './sqlite-appender.ts';

const event = (n: number): AuditInput => ({
  tenantId: null, actor: { type: 'system', id: 'node-b' }, action: 'test.node-b', resource: { type: 'test', id: String(n), name: null }, outcome: 'allowed',
});

// SPEC §13: many nodes on one database, one chain. A second node here is a second audit log and
// checkpointer over its own connections (and, on SQLite, its own appender worker), under the same root key.
describeEachDialect('two nodes appending to and checkpointing one audit chain', (dialect) => {
  let h: Harness;
  let other: Storage;
  let appender: AuditAppender | undefined;
  let b: { audit: AuditLog; checkpoints: Checkpointer };
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'SHARED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SHARED', 'production', { value: 'two-nodes-value' });
    other = await h.database.open();
    appender = other.sqlitePath ? createSqliteAppender({ path: other.sqlitePath }) : undefined;
    const audit = createAuditLog({ db: other.db, clock: h.clock, macKeys: h.services.macKeys, ...(appender ? { appender } : {}) });
    b = { audit, checkpoints: createCheckpointer({ db: other.db, root: h.services.seal, clock: h.clock, audit, macKeys: h.services.macKeys }) };
  });
  after(async () => {
    await appender?.close();
    await other.close();
    await h.close();
  });

  test('reads, writes and checkpoints racing on both nodes leave one whole chain that both verify', async () => {
    const before = Number((await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    const work: Array<Promise<unknown>> = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 10; i++) work.push(h.services.values.read(h.ctx, 'SHARED', 'production'));
      work.push(h.services.values.write(h.ctx, 'SHARED', 'production', { value: `two-nodes-value-${round}` }));
      for (let i = 0; i < 10; i++) work.push(b.audit.record([event(round * 100 + i)]));
      work.push(other.db.transaction().execute((trx) => b.audit.appendInTx(trx, [event(round * 100 + 50), event(round * 100 + 51)])));
      work.push(h.services.checkpoints.checkpoint(), b.checkpoints.checkpoint());
    }
    await Promise.all(work);
    // What the races appended: 8 x (10 reads + 1 write on A, 10 + 2 on B), and one event per checkpoint signed.
    const events = await h.storage.db.selectFrom('audit_events').select(['seq', 'action']).where('seq', '>', before).orderBy('seq').execute();
    const checkpointEvents = events.filter((e) => e.action === 'audit.checkpoint').length;
    assert.equal(events.length, 8 * 23 + checkpointEvents);
    assert.deepEqual(events.map((e) => Number(e.seq)), events.map((_, i) => before + 1 + i), 'no gap, no repeat');
    // One more on each node, so each signs the other's events too.
    await h.services.values.read(h.ctx, 'SHARED', 'production');
    assert.ok(await b.checkpoints.checkpoint(), 'node B signs a head that holds node A\'s events');
    await b.audit.record([event(999)]);
    assert.ok(await h.services.checkpoints.checkpoint(), 'node A signs a head that holds node B\'s events');
    const key = h.services.checkpoints.publicKey();
    const macKey = h.services.macKeys.current()!.key;
    for (const [name, log, floor] of [['A', h.services.audit, h.services.checkpoints.highestSigned()], ['B', b.audit, b.checkpoints.highestSigned()]] as const) {
      const verified = await log.verify({ trustedPublicKey: key, checkpointFloor: floor, macKey });
      assert.equal(verified.ok, true, `node ${name}: ${JSON.stringify(verified)}`);
    }
    assert.equal(h.services.checkpoints.tampered() || b.checkpoints.tampered(), false);
  });
});
