import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { fakeDependents, rotationFor, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { startRotationSource, type RotationSource } from '../../../test/fixtures/rotation-source.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'staging';
const DAY = 86_400_000;

/**
 * What Keyhold hands out must work at the source: whatever races a rotation or a rollback (a
 * write, a rollback, a policy edit, a refused value), the source ends up holding the value that is
 * current in Keyhold, and nothing the source issued is left behind.
 */
describeEachDialect('rotation: the source stays consistent with what Keyhold hands out', (dialect) => {
  let h: Harness;
  let source: RotationSource;
  let n = 0;
  async function secret(value = 'initial-value-000') {
    const name = `SRC_${++n}`;
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value });
    return name;
  }
  const current = async (name: string) => (await h.services.values.read(h.ctx, name, ENV)).value;

  before(async () => {
    h = await createHarness(dialect);
    source = await startRotationSource();
  });
  after(async () => {
    await source.close();
    await h.close();
  });

  test('a policy rollback window longer than the server\'s is refused, not silently capped', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    const refused = rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', rollbackWindowMs: 30 * DAY });
    await assert.rejects(refused, (e: { code?: string; message?: string }) => e.code === 'VALIDATION_FAILED' && /rollbackWindowMs/.test(e.message ?? ''));
    assert.equal(await codeOf(rot.service.getPolicy(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND', 'nothing was stored');
    assert.equal((await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', rollbackWindowMs: 7 * DAY })).rollbackWindowMs, 7 * DAY);
  });

  test('a policy stored with a longer window than the server\'s: past the server\'s window, rollback is refused before the source is touched', async () => {
    const name = await secret('the-old-value-01');
    const src = scriptedRotator(`window-${n}`, {});
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    // As a policy set before longer windows were refused.
    await h.storage.db.updateTable('rotation_policies').set({ rollback_window_ms: 30 * DAY }).where('secret_name', '=', name).execute();
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    const rotated = await current(name);
    h.clock.advance(8 * DAY);
    assert.equal(await codeOf(rot.service.rollback(h.ctx, name, ENV)), 'NO_PREVIOUS_VERSION');
    assert.deepEqual(src.applied, [rotated], 'the previous value was never set at the source again');
    assert.equal(await current(name), rotated);
  });

  test('a rollback whose label swap loses a race sets the source back to what Keyhold hands out', async () => {
    const name = await secret('first-value-0001');
    let race = false;
    const src = scriptedRotator(`race-${n}`, {
      apply: async (rc) => {
        if (!race || rc.rotationId !== 'rollback') return;
        race = false;
        await h.services.values.write(h.ctx, name, ENV, { value: 'written-during-rollback' });
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    race = true;
    assert.equal(await codeOf(rot.service.rollback(h.ctx, name, ENV)), 'CAS_MISMATCH');
    assert.equal(await current(name), 'written-during-rollback');
    assert.equal(src.applied.at(-1), 'written-during-rollback', 'the source was set back to the current value, not left at the previous one');
  });

  test('a rollback the source refuses is a stable ROTATION_SOURCE_FAILED, with the rotator\'s own words kept out, and nothing moves', async () => {
    const name = await secret('first-value-0002');
    let refuse = false;
    const src = scriptedRotator(`refusing-${n}`, {
      apply: async (rc) => {
        if (refuse && rc.rotationId === 'rollback') throw new Error('connect ECONNREFUSED db-7.internal.example:5432');
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    const before = await current(name);
    refuse = true;
    const err = await rot.service.rollback(h.ctx, name, ENV).then(() => assert.fail('expected a refusal'), (e: { code?: string; status?: number; message?: string }) => e);
    assert.deepEqual([err.code, err.status], ['ROTATION_SOURCE_FAILED', 502]);
    assert.doesNotMatch(err.message ?? '', /db-7|ECONNREFUSED/);
    assert.equal(await current(name), before, 'the labels did not move');
  });

  test('a rollback that fails at the source leaves a failed event in the trail, and one that leaves the source holding the previous value says so', async () => {
    const name = await secret('first-value-0003');
    let mode: 'ok' | 'refuse' | 'race' = 'ok';
    const src = scriptedRotator(`trail-${n}`, {
      apply: async (rc) => {
        if (rc.rotationId !== 'rollback') return;
        if (mode === 'refuse') throw new Error('connect ECONNREFUSED db-7.internal.example:5432');
        if (mode === 'race') {
          // The previous value reaches the source, then a write beats the label swap and the source refuses the current one.
          mode = 'refuse';
          await h.services.values.write(h.ctx, name, ENV, { value: 'written-during-rollback' });
        }
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    const values = [await current(name), 'first-value-0003'];
    const failures = async () => (await h.storage.db.selectFrom('audit_events').select(['action', 'outcome', 'reason', 'context'])
      .where('resource_name', '=', name).where('action', '=', 'rotation.rollback').orderBy('seq').execute())
      .map((e) => ({ outcome: e.outcome, reason: e.reason, ...(JSON.parse(e.context) as { source?: string }) }));

    mode = 'refuse';
    assert.equal(await codeOf(rot.service.rollback(h.ctx, name, ENV)), 'ROTATION_SOURCE_FAILED');
    mode = 'race';
    assert.equal(await codeOf(rot.service.rollback(h.ctx, name, ENV)), 'CAS_MISMATCH');
    const trail = await failures();
    assert.deepEqual(trail.map((e) => [e.outcome, e.reason, e.source]), [
      ['failed', 'ROTATION_SOURCE_FAILED', 'unchanged'],
      ['failed', 'CAS_MISMATCH', 'holds-previous'],
    ]);
    const text = JSON.stringify(trail);
    for (const v of [...values, 'written-during-rollback']) assert.ok(!text.includes(v), 'no value in the trail');
    assert.doesNotMatch(text, /db-7|ECONNREFUSED/);
  });

  for (const landing of ['write', 'rollback'] as const) {
    test(`a ${landing} landing during a rotation wins, and the source is restored to the value Keyhold now hands out`, async () => {
      const name = await secret('older-value-0001');
      await h.services.values.write(h.ctx, name, ENV, { value: 'before-the-rotation' });
      const restoredTo: Array<string | null> = [];
      const src = scriptedRotator(`landing-${landing}-${n}`, {
        apply: async () => {
          if (landing === 'write') await h.services.values.write(h.ctx, name, ENV, { value: 'written-meanwhile' });
          else await h.services.values.rollback(h.ctx, name, ENV);
        },
        restore: async (rc) => {
          restoredTo.push(rc.current);
          return { ok: true, detail: 'restored' };
        },
      });
      const rot = rotationFor(h, { rotators: [src] });
      await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
      const r = await rot.service.rotate(h.ctx, name, ENV);
      assert.deepEqual([r.state, r.error?.code], ['rolled_back', 'CURRENT_CHANGED']);
      const now = await current(name);
      assert.equal(now, landing === 'write' ? 'written-meanwhile' : 'older-value-0001');
      assert.deepEqual(restoredTo, [now], 'restore was asked to make the source hold the current value');
    });
  }

  test('the rotator and settings of a policy cannot change while a rotation of it runs; the rotation keeps one source', async () => {
    const name = await secret();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inApply = new Promise<void>((r) => (entered = r));
    const hosts: string[] = [];
    const src = scriptedRotator(`hosts-${n}`, {
      generate: async () => ({ value: `next-value-${n}`, state: {} }),
      apply: async (rc) => {
        hosts.push(`apply@${String(rc.settings.host)}`);
        entered();
        await gate;
      },
      test: async () => ({ ok: false, detail: 'login refused' }),
      restore: async (rc) => {
        hosts.push(`restore@${String(rc.settings.host)}`);
        return { ok: true, detail: 'restored' };
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type, settings: { host: 'db-a' } });
    const running = rot.service.rotate(h.ctx, name, ENV);
    await Promise.race([inApply, running]);
    const edits = [
      await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type, settings: { host: 'db-b' } })),
      await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' })),
      await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type, settings: { host: 'db-a' }, notify: [{ kind: 'email', id: 'ops@example.com' }] })),
    ];
    release();
    assert.deepEqual(edits, ['ROTATION_IN_PROGRESS', 'ROTATION_IN_PROGRESS', 'ok'], 'only a change that leaves the source alone is taken');
    assert.equal((await running).state, 'rolled_back');
    assert.deepEqual(hosts, ['apply@db-a', 'restore@db-a'], 'restored where it was applied');
    assert.equal((await rot.service.getPolicy(h.ctx, name, ENV)).settings.host, 'db-a');
  });

  test('a generated value that cannot be staged is undone at the source: the credential it issued is revoked, nothing else is touched', async () => {
    const name = await secret();
    const revoked: unknown[] = [];
    const src = scriptedRotator(`oversized-${n}`, {
      generate: async () => ({ value: 'v'.repeat(70_000), state: { id: 'issued-1' } }),
      discard: async (rc) => {
        revoked.push(rc.state.id);
        return { ok: true, detail: 'revoked' };
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.deepEqual([r.state, r.error?.step], ['rolled_back', 'generate']);
    assert.match(r.error!.detail, /at most .*\(source: revoked\)/);
    assert.deepEqual(revoked, ['issued-1']);
    assert.deepEqual(src.restored, [], 'restore (which assumes apply ran, e.g. sets a password) is not called');
    assert.equal(await current(name), 'initial-value-000');
  });

  test('an external credential issued for a secret deleted meanwhile is revoked at the source', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url: source.url } });
    source.block('/issue');
    const running = rot.service.rotate(h.ctx, name, ENV);
    await source.reached();
    await h.services.secrets.remove(h.ctx, name);
    source.release();
    const r = await running;
    assert.deepEqual([r.state, r.error?.code, r.error?.step], ['rolled_back', 'ROTATOR_ERROR', 'generate']);
    const issued = [...source.credentials.values()].at(-1)!;
    assert.deepEqual([issued.active, issued.revoked], [false, true], 'issued, never activated, and revoked');
  });

  test('the pending version cannot be destroyed under a live rotation, so its rollback still restores the source', async () => {
    const name = await secret('kept-value-0001');
    let destroyed = '';
    const src = scriptedRotator(`destroy-${n}`, {
      generate: async () => ({ value: 'pending-value-01', state: {} }),
      test: async () => {
        // An admin tidying up versions while the rotation tests its value at the source.
        destroyed = await codeOf(h.services.secrets.destroy(h.ctx, name, { environment: ENV, versions: [2] }));
        return { ok: false, detail: 'login refused' };
      },
    });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(destroyed, 'VALIDATION_FAILED');
    assert.deepEqual([r.state, r.error?.code], ['rolled_back', 'TEST_FAILED']);
    assert.deepEqual(src.restored, ['pending-value-01'], 'the source was restored');
    assert.equal(await current(name), 'kept-value-0001');
  });

  test('a node that lost its lease to another writes nothing more to the rotation that node rolled back', async () => {
    const name = await secret('stays-current');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const deps = fakeDependents({ connectors: { db: { password: name } }, check: async () => { await gate; return { ok: true }; } });
    const slow = rotationFor(h, { dependents: deps, leaseMs: 3_600_000 });
    await slow.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const running = slow.service.rotate(h.ctx, name, ENV);
    while (deps.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    h.clock.advance(3_600_000 + 60_000);
    const other = rotationFor(h, { leaseMs: 5_000 });
    try {
      assert.equal(await other.engine.recover(), 1, 'the other node takes it over and rolls it back');
    } finally {
      release();
    }
    await running;
    const row = await h.storage.db.selectFrom('rotations').select(['state', 'step', 'checks']).where('secret_name', '=', name).executeTakeFirstOrThrow();
    assert.deepEqual([row.state, row.step, row.checks], ['rolled_back', 'done', '[]'], 'the first node\'s late verify left no trace on the row');
    const steps = await h.storage.db.selectFrom('audit_events').select('context').where('resource_name', '=', name).where('action', '=', 'rotation.step').execute();
    assert.ok(!steps.some((e) => JSON.parse(e.context).step === 'verify'), 'and no step event');
    assert.equal(await current(name), 'stays-current');
  });

  test('a node whose lease ran out while it still drives a rotation does not take it over from itself', async () => {
    const name = await secret('stays-until-promoted');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const deps = fakeDependents({ connectors: { db: { password: name } }, check: async () => { await gate; return { ok: true }; } });
    const src = scriptedRotator(`alive-${n}`, {});
    // An hour's lease: its real-timer heartbeat (every third of the lease) cannot renew it after the clock moves,
    // which would leave nothing orphaned and the test passing without testing anything.
    const rot = rotationFor(h, { dependents: deps, rotators: [src], leaseMs: 3_600_000 });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    const running = rot.service.rotate(h.ctx, name, ENV);
    while (deps.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    // Its renewals failed for longer than the lease (a database failover, a stalled event loop): the lease looks orphaned.
    h.clock.advance(3_600_000 + 60_000);
    const orphaned = await h.storage.db.selectFrom('rotations').select('id').where('secret_name', '=', name)
      .where('state', '=', 'running').where('lease_until', '<', h.clock.now()).execute();
    assert.equal(orphaned.length, 1, 'the rotation looks orphaned');
    let recovered = -1;
    try {
      recovered = await rot.engine.recover();
    } finally {
      release();
    }
    const r = await running;
    assert.equal(recovered, 0, 'its own live rotation is not taken over (and rolled back) under it');
    assert.deepEqual([r.state, r.attempt], ['succeeded', 1]);
    assert.deepEqual(src.restored, [], 'nothing undid the source under the promotion');
  });

  test('a deleted secret is not rotated on schedule (nothing is issued at the source); restored, it catches up', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url: source.url }, intervalMs: 3_600_000 });
    await h.services.secrets.remove(h.ctx, name);
    const issuedBefore = source.credentials.size;
    try {
      h.clock.advance(3_600_000);
      await rot.scheduler.tick();
      assert.equal(source.credentials.size, issuedBefore, 'no credential was issued for a deleted secret');
      await h.services.secrets.restore(h.ctx, name);
      await rot.scheduler.tick();
      assert.equal(source.credentials.size, issuedBefore + 1);
      const fresh = source.byValue(await current(name));
      assert.ok(fresh?.active && !fresh.revoked, 'the catch-up rotation ran');
    } finally {
      await rot.scheduler.stop();
    }
  });

  /** Everything stored about rotations and the secret's events, as one text to search for values in. */
  async function stored(name: string): Promise<string> {
    const rotations = await h.storage.db.selectFrom('rotations').selectAll().execute();
    const events = await h.storage.db.selectFrom('audit_events').selectAll().where('resource_name', '=', name).execute();
    return JSON.stringify([rotations, events]);
  }
  // A credential document naming a field twice means one thing to one JSON reader and another to the next (JSON.parse keeps the last).
  const [FIRST, SECOND] = ['cred_first_AAAAAAAAAAAAAAAA', 'cred_second_BBBBBBBBBBBBBBB'];

  test('an /issue answer naming "value" twice fails generate: nothing is activated at the source, current stays, neither value is stored', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url: source.url } });
    source.answerIssueWith(`{"id":"c-amb","value":"${FIRST}","value":"${SECOND}"}`);
    const calls = source.calls.length;
    try {
      const r = await rot.service.rotate(h.ctx, name, ENV);
      assert.deepEqual([r.state, r.error?.code, r.error?.step], ['rolled_back', 'ROTATOR_ERROR', 'generate']);
      assert.match(r.error!.detail, /\/issue answered JSON that names "value" twice/);
    } finally {
      source.answerIssueWith(null);
    }
    assert.deepEqual(source.calls.slice(calls), ['/issue'], 'no credential from the ambiguous answer was activated, tested or revoked');
    assert.equal(await current(name), 'initial-value-000');
    const text = await stored(name);
    for (const v of [FIRST, SECOND]) assert.ok(!text.includes(v), 'neither value is stored');
  });

  test('an alternating PostgreSQL value naming "password" twice: generate refuses to pick a role from it, before reaching the database', async () => {
    const ambiguous = `{"username":"kh_amb_a","password":"${FIRST}","password":"${SECOND}"}`;
    const name = await secret(ambiguous);
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, {
      // Port 9 (discard): a step that got as far as connecting would fail with "cannot connect", not the reason asserted.
      rotator: 'postgres', settings: { host: '127.0.0.1', port: 9, database: 'test', adminUser: 'postgres', strategy: 'alternating', roles: ['kh_amb_a', 'kh_amb_b'] },
    });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.deepEqual([r.state, r.error?.code, r.error?.step], ['rolled_back', 'ROTATOR_ERROR', 'generate']);
    assert.match(r.error!.detail, /the current value names "password" twice/);
    assert.equal(await current(name), ambiguous, 'current untouched');
    const text = await stored(name);
    for (const v of [FIRST, SECOND]) assert.ok(!text.includes(v), 'neither password is stored outside the value');
  });
});
