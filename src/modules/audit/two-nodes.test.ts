import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { openAuditNode, startAuditNodeWorker, type AuditNode } from '../../../test/helpers/audit-node.ts';
import type { AuditInput } from './audit-log.ts';

const event = (n: number): AuditInput => ({
  tenantId: null, actor: { type: 'system', id: 'node-b' }, action: 'test.node-b', resource: { type: 'test', id: String(n), name: null }, outcome: 'allowed',
});

// SPEC §13: many nodes on one database, one chain. A second node here is a second audit log and
// checkpointer over its own connections (and, on SQLite, its own appender worker), unsealed with the
// same shares. On SQLite it runs in a worker thread, as a second process would: node:sqlite blocks its
// thread while it waits for the write lock, so two nodes in one thread wait on each other until
// "database is locked" (test/helpers/audit-node.ts). PostgreSQL's driver waits without blocking.
describeEachDialect('two nodes appending to and checkpointing one audit chain', (dialect) => {
  let h: Harness;
  let b: AuditNode;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'SHARED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SHARED', 'production', { value: 'two-nodes-value' });
    const node = { dataDir: h.database.dataDir, shares: h.shares.slice(0, 2), now: h.clock.now() };
    b = dialect === 'sqlite' ? await startAuditNodeWorker({ url: h.database.url }, node) : await openAuditNode(await h.database.open(), node);
  });
  after(async () => {
    await b?.close();
    await h.close();
  });

  test('reads, writes and checkpoints racing on both nodes leave one whole chain that both verify', async () => {
    const before = Number((await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    const work: Array<Promise<unknown>> = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 10; i++) work.push(h.services.values.read(h.ctx, 'SHARED', 'production'));
      work.push(h.services.values.write(h.ctx, 'SHARED', 'production', { value: `two-nodes-value-${round}` }));
      for (let i = 0; i < 10; i++) work.push(b.record([event(round * 100 + i)]));
      work.push(b.appendInTx([event(round * 100 + 50), event(round * 100 + 51)]));
      work.push(h.services.checkpoints.checkpoint(), b.checkpoint());
    }
    await Promise.all(work);
    // What the races appended: 8 x (10 reads + 1 write on A, 10 + 2 on B), and one event per checkpoint signed.
    const events = await h.storage.db.selectFrom('audit_events').select(['seq', 'action']).where('seq', '>', before).orderBy('seq').execute();
    const checkpointEvents = events.filter((e) => e.action === 'audit.checkpoint').length;
    assert.equal(events.length, 8 * 23 + checkpointEvents);
    assert.deepEqual(events.map((e) => Number(e.seq)), events.map((_, i) => before + 1 + i), 'no gap, no repeat');
    // Each checkpoint names the one before it: two nodes never both chain from the same one.
    const checkpoints = await h.storage.db.selectFrom('audit_checkpoints').select(['seq', 'prev_seq']).orderBy('seq').execute();
    assert.deepEqual(checkpoints.map((c) => Number(c.prev_seq)), [0, ...checkpoints.slice(0, -1).map((c) => Number(c.seq))], 'one chain of checkpoints');
    // One more on each node, so each signs the other's events too.
    await h.services.values.read(h.ctx, 'SHARED', 'production');
    assert.ok(await b.checkpoint(), 'node B signs a head that holds node A\'s events');
    await b.record([event(999)]);
    assert.ok(await h.services.checkpoints.checkpoint(), 'node A signs a head that holds node B\'s events');
    const key = h.services.checkpoints.publicKey();
    const macKey = h.services.macKeys.current()!.key;
    for (const [name, log, floor] of [['A', h.services.audit, h.services.checkpoints.highestSigned()], ['B', b, await b.highestSigned()]] as const) {
      const verified = await log.verify({ trustedPublicKey: key, checkpointFloor: floor, macKey });
      assert.equal(verified.ok, true, `node ${name}: ${JSON.stringify(verified)}`);
    }
    assert.equal(h.services.checkpoints.tampered() || (await b.tampered()), false);
  });
});
