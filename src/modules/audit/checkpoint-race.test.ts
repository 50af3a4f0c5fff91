import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import type { AuditCheckpointsTable } from '../../storage/schema.ts';
import { createCheckpointer, type Checkpointer } from './checkpoints.ts';

/**
 * Checkpoints form one chain (each names the one before it, `prev_seq`): two checkpointers, on two
 * nodes or one, must never both sign a successor of the same checkpoint, whenever each reads the
 * last checkpoint and the head. Here the second one reads the last checkpoint, then the first one
 * signs and commits (its event moves the head), then the second reads the head: it must stand down.
 */
describeEachDialect('two checkpointers racing', (dialect) => {
  let h: Harness;
  let late: Checkpointer;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'CHECKPOINT_RACE', owner: 'ops' });
    await h.services.values.write(h.ctx, 'CHECKPOINT_RACE', 'production', { value: 'checkpoint-race-1' });
  });
  after(() => h.close());

  test('one that read the last checkpoint before the other signed signs nothing, and every checkpoint has its own predecessor', async () => {
    assert.ok(await h.services.checkpoints.checkpoint(), 'a first checkpoint');
    await h.services.values.read(h.ctx, 'CHECKPOINT_RACE', 'production');
    let winner: AuditCheckpointsTable | null = null;
    const paused = pauseAfterRead('audit_checkpoints', async () => {
      winner = await h.services.checkpoints.checkpoint();
    });
    late = createCheckpointer({ db: h.storage.db.withPlugin(paused), root: h.services.seal, clock: h.clock, audit: h.services.audit, macKeys: h.services.macKeys });
    const loser = await late.checkpoint();
    assert.ok(paused.fired() && winner, 'the other checkpointer signed between the read of the last checkpoint and the head');
    assert.equal(loser, null, `signed ${JSON.stringify(loser)} beside ${JSON.stringify(winner)}`);
    const all = await h.storage.db.selectFrom('audit_checkpoints').select(['seq', 'prev_seq']).orderBy('seq').execute();
    assert.deepEqual(all.map((c) => Number(c.prev_seq)), [0, ...all.slice(0, -1).map((c) => Number(c.seq))], 'one chain of checkpoints');
    const r = await h.services.audit.verify({ trustedPublicKey: h.services.checkpoints.publicKey(), checkpointFloor: h.services.checkpoints.highestSigned() });
    assert.equal(r.ok, true, JSON.stringify(r));
  });

  test('after standing down it signs from the winner on its next turn', async () => {
    await h.services.values.read(h.ctx, 'CHECKPOINT_RACE', 'production');
    const last = await h.storage.db.selectFrom('audit_checkpoints').select('seq').orderBy('seq', 'desc').executeTakeFirstOrThrow();
    const next = await late.checkpoint();
    assert.equal(Number(next?.prev_seq), Number(last.seq));
    assert.equal(late.highestSigned(), Number(next?.seq));
  });
});
