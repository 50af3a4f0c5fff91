import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { schedulerHarness, scriptedRotator } from '../../../test/helpers/rotation.ts';

const ENV = 'staging';
const DAY = 86_400_000;

/**
 * A soft-deleted secret may be restored, so its policy stays, but no pass of the scheduler may reach
 * its source meanwhile: not its due run, not its expiry run. Pinned on the rotator itself, since a
 * run that starts is undone at the source and would leave nothing there to see.
 */
describeEachDialect('rotation scheduler: a deleted secret is left alone', (dialect) => {
  test('neither a due run nor an expiry run of a deleted secret starts, or asks its rotator for anything', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const generated: string[] = [];
    const src = scriptedRotator('counted', {
      generate: async () => {
        generated.push('generate');
        return { value: `value-${generated.length}-abcdefgh`, state: {} };
      },
    });
    const rot = node({ rotators: [src] });
    await h.services.secrets.create(h.ctx, { name: 'DELETED_DUE', owner: 'ops', expiresAt: new Date(h.clock.now() + 10 * DAY).toISOString() });
    await h.services.values.write(h.ctx, 'DELETED_DUE', ENV, { value: 'initial-value-000' });
    await rot.service.setPolicy(h.ctx, 'DELETED_DUE', ENV, { rotator: src.type, intervalMs: DAY, expiryLeadMs: 7 * DAY });
    await h.services.secrets.remove(h.ctx, 'DELETED_DUE');
    h.clock.advance(4 * DAY);
    const report = await rot.scheduler.tick();
    assert.deepEqual([report.started, report.retried, generated], [0, 0, []]);
    const rows = await h.storage.db.selectFrom('rotations').select('id').where('secret_name', '=', 'DELETED_DUE').execute();
    assert.deepEqual(rows, [], 'no rotation was started');
  });
});
