import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { recordingNotifier, rotationFor } from '../../../test/helpers/rotation.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'staging';

describeEachDialect('rotation: rehearsals end on their own', (dialect) => {
  let h: Harness;
  let n = 0;
  async function secret(value = 'initial-value-000') {
    const name = `RH_${++n}`;
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value });
    return name;
  }

  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a rehearsal of a manual policy ends instead of waiting for a value nobody can supply, and leaves the policy free', async () => {
    const name = await secret();
    const notifier = recordingNotifier();
    const rot = rotationFor(h, { notifier });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'manual', settings: { reminderMs: 3_600_000 }, notify: [{ kind: 'email', id: 'a@example.com' }] });
    const r = await rot.service.rotate(h.ctx, name, ENV, { rehearse: true });
    assert.equal(r.rehearsal, true);
    assert.notEqual(r.state, 'awaiting_value', 'supply and cancel only reach live rotations: a waiting rehearsal could never end');
    assert.equal(r.state, 'rolled_back');
    assert.match(r.error?.detail ?? '', /person/);
    // Nothing of it is left holding the secret: no reminders, another rehearsal runs, the policy can change.
    h.clock.advance(3 * 3_600_000);
    assert.equal((await rot.scheduler.tick()).reminded, 0, 'nobody is reminded to supply a value for a rehearsal');
    assert.equal((await rot.service.rotate(h.ctx, name, ENV, { rehearse: true })).state, 'rolled_back');
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'manual', settings: { reminderMs: 7_200_000 } })), 'ok');
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'awaiting_value', 'a live manual rotation still waits for a person');
    assert.equal((await rot.service.supply(h.ctx, name, ENV, 'typed-in-by-a-person')).state, 'succeeded');
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, 'typed-in-by-a-person');
    await rot.scheduler.stop();
  });
});
