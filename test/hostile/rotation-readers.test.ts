import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { fakeDependents, rotationFor } from '../helpers/rotation.ts';

const ROTATIONS = 100;

describeEachDialect('readers during rotations', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test(`a reader calling values.read continuously during ${ROTATIONS} rotations never fails and only sees promoted values`, async (t) => {
    await h.services.secrets.create(h.ctx, { name: 'HOT_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'HOT_KEY', 'production', { value: 'first-value-0000' });
    const promoted = new Set<string>(['first-value-0000']);
    const staged = new Set<string>();
    // Every staged value is seen by the connector check before it can be promoted.
    const deps = fakeDependents({ connectors: { api: { key: 'HOT_KEY' } }, check: (_c, o) => (staged.add(o.key!), { ok: true }) });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, 'HOT_KEY', 'production', { rotator: 'random' });

    let stop = false;
    let reads = 0;
    const failures: string[] = [];
    const seen = new Set<string>();
    const reader = async () => {
      while (!stop) {
        try {
          const v = await h.services.values.read(h.ctx, 'HOT_KEY', 'production');
          seen.add(v.value);
          reads++;
        } catch (err) {
          failures.push((err as { code?: string }).code ?? String(err));
        }
      }
    };
    const readers = [reader(), reader()];
    let failedRotations = 0;
    for (let i = 0; i < ROTATIONS; i++) {
      const r = await rot.service.rotate(h.ctx, 'HOT_KEY', 'production');
      if (r.state !== 'succeeded') failedRotations++;
      promoted.add((await h.services.values.read(h.ctx, 'HOT_KEY', 'production')).value);
    }
    stop = true;
    await Promise.all(readers);
    t.diagnostic(`${reads} reads during ${ROTATIONS} rotations, ${failures.length} failed`);
    assert.equal(failedRotations, 0);
    assert.deepEqual(failures, [], 'no read failed');
    assert.ok(reads > ROTATIONS, 'the readers really ran throughout');
    for (const v of seen) assert.ok(promoted.has(v), 'a reader never sees a pending value');
  });
});
