import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { rotationFor, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'staging';

/**
 * A live rotation owns its source until it ends: it applies, tests and may restore there, from the
 * policy it started with. Deleting that policy or rolling back under it would leave the source
 * holding a value Keyhold does not hand out; both are refused until the rotation ends. Policy changes
 * are also refused for a stale revision and for settings past their size bound.
 */
describeEachDialect('rotation: what waits for a live rotation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('while a rotation runs, its policy can be neither deleted nor rolled back; the source sees only the rotation', async () => {
    const name = 'LIVE_GUARDS';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value: 'initial-value-000' });
    let hold = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inApply = new Promise<void>((r) => (entered = r));
    const src = scriptedRotator('held-apply', {
      apply: async () => {
        if (!hold) return;
        hold = false;
        entered();
        await gate;
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded', 'a first rotation leaves a previous version to roll back to');
    hold = true;
    const running = rot.service.rotate(h.ctx, name, ENV);
    await Promise.race([inApply, running]);
    const applied = src.applied.length;
    const refusals = [await codeOf(rot.service.deletePolicy(h.ctx, name, ENV)), await codeOf(rot.service.rollback(h.ctx, name, ENV))];
    const appliedMeanwhile = src.applied.length - applied;
    release();
    assert.deepEqual(refusals, ['ROTATION_IN_PROGRESS', 'ROTATION_IN_PROGRESS']);
    assert.equal(appliedMeanwhile, 0, 'the refused rollback set nothing at the source');
    assert.equal((await running).state, 'succeeded');
    assert.equal((await rot.service.getPolicy(h.ctx, name, ENV)).rotator, src.type, 'the policy is still there');
    const versions = await h.services.values.history(h.ctx, name, ENV);
    assert.deepEqual(versions.filter((v) => v.labels.includes('current')).map((v) => v.version), [3], 'the rotation promoted, nothing rolled back');
    await rot.scheduler.stop();
  });

  test('a policy change naming a revision that is no longer the latest is CAS_MISMATCH and changes nothing', async () => {
    const name = 'REVISION_GUARD';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    const rot = rotationFor(h);
    const first = await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 20 } });
    const second = await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 }, revision: first.revision });
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 32 }, revision: first.revision })), 'CAS_MISMATCH');
    const now = await rot.service.getPolicy(h.ctx, name, ENV);
    assert.deepEqual([now.revision, now.settings], [second.revision, { length: 24 }]);
    await rot.scheduler.stop();
  });

  test('a policy whose settings are over 8 KB is VALIDATION_FAILED before its rotator reads them, and nothing is stored', async () => {
    const name = 'SETTINGS_BOUND';
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    const rot = rotationFor(h);
    const big = rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24, note: 'n'.repeat(8200) } });
    await assert.rejects(big, (e: { code?: string; message?: string }) => e.code === 'VALIDATION_FAILED' && /8192 bytes/.test(e.message ?? ''));
    assert.equal(await codeOf(rot.service.getPolicy(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND');
    await rot.scheduler.stop();
  });
});
