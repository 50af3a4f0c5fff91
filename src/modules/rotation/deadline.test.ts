import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { heldSource, rotationFor, schedulerHarness, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { until } from '../../../test/helpers/deadline.ts';
import type { TenantContext } from '../shared/context.ts';
import type { RotatorContext } from './rotators/types.ts';
import { withDeadline } from './deadline.ts';
import { retryDelay } from './retries.ts';
import { LIVE_STATES } from './types.ts';

const ENV = 'staging';
const DAY = 86_400_000;
/**
 * The deadline of the tests that wait for one. Nothing else has to finish within it (what must happen meanwhile is
 * shown with sources the test holds and releases itself), so it only has to be longer than an in-memory rotator call.
 */
const DEADLINE_MS = 300;

/**
 * Sources that never answer: one whose call gives up when its signal aborts (as the built-in ones do), one that
 * ignores the signal altogether. `aborted` counts the deadlines met; `inFlight` the calls entered and not yet aborted
 * (a slot the pass still gives them), and `peak` the most of those at once.
 */
function hungSources() {
  const state = { aborted: 0, inFlight: 0, peak: 0 };
  const hang = (rc: RotatorContext, honours: boolean) => new Promise<void>((_resolve, reject) => {
    state.peak = Math.max(state.peak, ++state.inFlight);
    rc.signal.addEventListener('abort', () => {
      state.aborted++;
      state.inFlight--;
      if (honours) reject(rc.signal.reason as Error);
    }, { once: true });
  });
  return {
    state,
    reset: () => Object.assign(state, { aborted: 0, inFlight: 0, peak: 0 }),
    kinds: [
      { name: 'a rotator that never answers but honours its signal', rotator: scriptedRotator('hung', { apply: (rc) => hang(rc, true) }) },
      { name: 'a rotator that ignores its signal', rotator: scriptedRotator('deaf', { apply: (rc) => hang(rc, false) }) },
    ],
  };
}

async function policy(h: Harness, rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string, rotator: string) {
  await h.services.secrets.create(ctx, { name, owner: 'ops' });
  await h.services.values.write(ctx, name, ENV, { value: 'initial-value-000' });
  await rot.service.setPolicy(ctx, name, ENV, { rotator, intervalMs: DAY });
}

/** Another tenant with one due policy (rotated by the random rotator), due after everything of the first tenant. */
async function quietTenant(h: Harness, rot: ReturnType<typeof rotationFor>): Promise<TenantContext> {
  const other = h.contextFor((await h.services.tenants.create('other-tenant')).id);
  await policy(h, rot, other, 'QUIET', 'random');
  // The first tenant's are met first: a pass that ran one rotation at a time would hold QUIET behind them.
  await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 60_000 }).where('tenant_id', '=', h.ctx.tenantId).execute();
  await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() }).where('tenant_id', '=', other.tenantId).execute();
  return other;
}

/** Waits until `name`'s first rotation has ended (succeeded, rolled back...), whatever it ended in. */
const ended = (rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string) =>
  until(`${name}'s rotation ended`, async () => {
    const [r] = await rot.service.history(ctx, name, ENV);
    return r !== undefined && !LIVE_STATES.includes(r.state);
  });

const states = async (rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string) =>
  (await rot.service.history(ctx, name, ENV)).map((r) => [r.state, r.step, r.error?.code ?? null]);

describeEachDialect('rotation steps have a deadline, and a hung source holds neither the pass nor other tenants', (dialect) => {
  const { state, reset, kinds } = hungSources();
  for (const kind of kinds) {
    test(`${kind.name}: the step times out, the rotation rolls back with STEP_TIMEOUT, the pass ends and counts it, and it is retried after the usual backoff`, async (t) => {
      const { h, node } = await schedulerHarness(dialect, t);
      const rot = node({ rotators: [kind.rotator], stepTimeoutMs: DEADLINE_MS });
      await policy(h, rot, h.ctx, 'HUNG', kind.rotator.type);
      const other = await quietTenant(h, rot);
      reset();

      const began = performance.now();
      const report = await rot.scheduler.tick();
      const took = performance.now() - began;

      assert.equal(state.aborted, 1, 'the hung call\'s signal was aborted');
      assert.ok(took >= DEADLINE_MS && took < DEADLINE_MS + 10_000, `the pass ended after the deadline, not never (${Math.round(took)} ms)`);
      const [hung] = await rot.service.history(h.ctx, 'HUNG', ENV);
      assert.equal(hung!.state, 'rolled_back');
      assert.deepEqual([hung!.error?.code, hung!.error?.step], ['STEP_TIMEOUT', 'apply']);
      assert.match(hung!.error!.detail, new RegExp(`apply did not finish within ${DEADLINE_MS} ms`));
      assert.equal(kind.rotator.restored.length, 1, 'the source was restored as after any failed apply');
      assert.deepEqual(await states(rot, other, 'QUIET'), [['succeeded', 'done', null]]);
      assert.deepEqual([report.started, report.skipped, report.retried], [2, 0, 0], 'the timed-out run counts as started, like the other tenant\'s');
      const s = (await rot.service.status(h.ctx)).find((p) => p.secret === 'HUNG')!;
      assert.equal(s.lastResult, 'rolled_back');
      assert.match(s.lastError ?? '', /^apply: STEP_TIMEOUT: /);
      assert.equal(s.retry?.failedAttempts, 1);
      assert.equal(s.retry?.nextAttemptAt, new Date(h.clock.now() + retryDelay(1)).toISOString(), 'tried again after the usual backoff');
    });
  }

  test('another tenant\'s due rotation is not held behind a hung source: it completes while the hung step is still pending', async (t) => {
    const held = heldSource(t);
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node({ rotators: [held.rotator] });
    await policy(h, rot, h.ctx, 'HUNG', 'held');
    const other = await quietTenant(h, rot);

    let passEnded = false;
    const pass = rot.scheduler.tick().finally(() => (passEnded = true));
    await ended(rot, other, 'QUIET');
    assert.deepEqual(await states(rot, other, 'QUIET'), [['succeeded', 'done', null]]);
    assert.deepEqual([...held.holding], ['HUNG'], 'HUNG\'s apply is still waiting on its source');
    assert.deepEqual(await states(rot, h.ctx, 'HUNG'), [['running', 'apply', null]]);
    assert.equal(passEnded, false, 'the pass is still waiting for HUNG');

    held.release();
    const report = await pass;
    assert.deepEqual([report.started, report.skipped], [2, 0]);
    assert.deepEqual(await states(rot, h.ctx, 'HUNG'), [['succeeded', 'done', null]], 'released, it finishes');
  });

  test('a tenant whose source hangs for all its due rotations holds at most half the pass\'s slots: another tenant\'s rotation completes meanwhile', async (t) => {
    const held = heldSource(t);
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node({ rotators: [held.rotator] });
    // As many as the pass has slots: without a per-tenant bound they would take them all.
    for (let i = 0; i < 4; i++) await policy(h, rot, h.ctx, `HUNG_${i}`, 'held');
    const other = await quietTenant(h, rot);

    const pass = rot.scheduler.tick();
    await ended(rot, other, 'QUIET');
    assert.deepEqual(await states(rot, other, 'QUIET'), [['succeeded', 'done', null]]);
    await until('two of the first tenant\'s rotations waiting on the source', () => held.holding.size === 2);
    const started = await h.storage.db.selectFrom('rotations').select('secret_name').where('tenant_id', '=', h.ctx.tenantId).execute();
    assert.deepEqual(started.map((r) => r.secret_name).sort(), [...held.holding].sort(), 'the other two wait for a slot of their tenant, not for a free one of the pass');

    held.release();
    const report = await pass;
    assert.equal(report.started, 5);
    for (let i = 0; i < 4; i++) assert.deepEqual(await states(rot, h.ctx, `HUNG_${i}`), [['succeeded', 'done', null]]);
  });

  test('rotations whose source ignores its signal give their tenant\'s slots back at the deadline: all time out, two at a time, and the pass ends', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const [, deaf] = kinds;
    const rot = node({ rotators: [deaf!.rotator], stepTimeoutMs: DEADLINE_MS });
    for (let i = 0; i < 4; i++) await policy(h, rot, h.ctx, `HUNG_${i}`, 'deaf');
    const other = await quietTenant(h, rot);
    reset();

    const report = await rot.scheduler.tick();
    assert.equal(report.started, 5);
    assert.equal(state.aborted, 4, 'each hung call was given up at its deadline');
    assert.equal(state.peak, 2, 'never more than two of one tenant at once, though the deaf calls never return');
    for (let i = 0; i < 4; i++) {
      assert.deepEqual((await rot.service.history(h.ctx, `HUNG_${i}`, ENV)).map((r) => [r.state, r.error?.code]), [['rolled_back', 'STEP_TIMEOUT']]);
    }
    assert.deepEqual(await states(rot, other, 'QUIET'), [['succeeded', 'done', null]]);
  });

  test('a credential the source issues after generate\'s deadline is discarded there, not left behind', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const discarded: string[] = [];
    let issue!: () => void;
    const slow = scriptedRotator('slow-issuer', {
      // Answers only when the test says so, long after its deadline and the rollback.
      generate: () => new Promise((resolve) => (issue = () => resolve({ value: 'issued-too-late-0001', state: { id: 'cred-1' } }))),
      discard: async (rc, value) => {
        discarded.push(`${String(rc.state.id)}:${value}`);
        return { ok: true, detail: 'revoked' };
      },
    });
    const rot = node({ rotators: [slow], stepTimeoutMs: DEADLINE_MS });
    await policy(h, rot, h.ctx, 'SLOW_ISSUER', 'slow-issuer');
    h.clock.advance(DAY);
    await rot.scheduler.tick();
    const [r] = await rot.service.history(h.ctx, 'SLOW_ISSUER', ENV);
    assert.deepEqual([r!.state, r!.error?.code, r!.error?.step], ['rolled_back', 'STEP_TIMEOUT', 'generate']);
    assert.deepEqual(discarded, [], 'nothing was issued yet');
    issue();
    await until('the late credential discarded', () => discarded.length > 0);
    assert.deepEqual(discarded, ['cred-1:issued-too-late-0001']);
  });
});

test('a rotator call is aborted at once when the lease is lost (the parent signal), not only at the deadline', async () => {
  const lease = new AbortController();
  let seen: AbortSignal | null = null;
  const started = performance.now();
  const waiting = withDeadline(3_000, lease.signal, 'apply', (signal) => {
    seen = signal;
    return new Promise<never>(() => {}); // a source that never answers
  });
  const outcome = waiting.then(() => 'answered', (err: unknown) => err);
  await new Promise((resolve) => setImmediate(resolve));
  const lost = new Error('lease lost');
  lease.abort(lost);
  assert.equal(await outcome, lost, 'the wait ends with the lease\'s reason');
  assert.equal(seen!.aborted, true, 'the rotator\'s own signal is aborted, so it stops talking to the source');
  assert.ok(performance.now() - started < 2_000, 'before the deadline');
  // Already lost before the call: the rotator gets an aborted signal and the wait ends at once.
  const gone = new AbortController();
  gone.abort(lost);
  assert.equal(await withDeadline(3_000, gone.signal, 'apply', (signal) => (signal.aborted ? Promise.resolve('aborted') : new Promise<never>(() => {}))).catch((e: unknown) => e), lost);
});
