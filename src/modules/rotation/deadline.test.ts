import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { rotationFor, schedulerHarness, scriptedRotator } from '../../../test/helpers/rotation.ts';
import type { TenantContext } from '../shared/context.ts';
import type { RotatorContext } from './rotators/types.ts';
import { retryDelay } from './retries.ts';

const ENV = 'staging';
const DAY = 86_400_000;
/** Short enough that a test waits it out, long enough that a working rotation finishes well within it on a busy machine. */
const DEADLINE_MS = 4000;

/**
 * Sources that never answer: one whose call gives up when its signal aborts (as the built-in ones do), one that
 * ignores the signal altogether. `aborted` counts the deadlines met, to see what ran before one was.
 */
function hungSources() {
  const state = { aborted: 0 };
  const hang = (rc: RotatorContext, honours: boolean) => new Promise<void>((_resolve, reject) => {
    rc.signal.addEventListener('abort', () => {
      state.aborted++;
      if (honours) reject(rc.signal.reason as Error);
    }, { once: true });
  });
  return {
    state,
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

describeEachDialect('rotation steps have a deadline, and a hung source holds neither the pass nor other tenants', (dialect) => {
  const { state, kinds } = hungSources();
  for (const kind of kinds) {
    test(`${kind.name}: the step times out, the rotation rolls back with STEP_TIMEOUT and is retried, and another tenant's due rotation runs meanwhile`, async (t) => {
      const { h, node } = await schedulerHarness(dialect, t);
      let timedOutBefore = -1;
      const quick = scriptedRotator('quick', { apply: async () => void (timedOutBefore = state.aborted) });
      const rot = node({ rotators: [kind.rotator, quick], stepTimeoutMs: DEADLINE_MS });
      await policy(h, rot, h.ctx, 'HUNG', kind.rotator.type);
      const other = h.contextFor((await h.services.tenants.create('other-tenant')).id);
      await policy(h, rot, other, 'QUIET', 'quick');
      // The hung one is met first: a pass that ran one rotation at a time would hold QUIET behind it.
      await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 60_000 }).where('tenant_id', '=', h.ctx.tenantId).execute();
      await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() }).where('tenant_id', '=', other.tenantId).execute();
      state.aborted = 0;

      const began = performance.now();
      const report = await rot.scheduler.tick();
      const took = performance.now() - began;

      assert.equal(timedOutBefore, 0, 'QUIET was rotated before HUNG\'s deadline, not behind it');
      assert.deepEqual((await rot.service.history(other, 'QUIET', ENV)).map((r) => r.state), ['succeeded']);
      assert.equal(state.aborted, 1, 'the hung call\'s signal was aborted');
      assert.ok(took >= DEADLINE_MS && took < DEADLINE_MS + 10_000, `the pass ended after the deadline, not never (${Math.round(took)} ms)`);
      const [hung] = await rot.service.history(h.ctx, 'HUNG', ENV);
      assert.equal(hung!.state, 'rolled_back');
      assert.deepEqual([hung!.error?.code, hung!.error?.step], ['STEP_TIMEOUT', 'apply']);
      assert.match(hung!.error!.detail, new RegExp(`apply did not finish within ${DEADLINE_MS} ms`));
      assert.equal(kind.rotator.restored.length, 1, 'the source was restored as after any failed apply');
      assert.deepEqual([report.started, report.skipped], [2, 0]);
      const s = (await rot.service.status(h.ctx)).find((p) => p.secret === 'HUNG')!;
      assert.equal(s.lastResult, 'rolled_back');
      assert.match(s.lastError ?? '', /^apply: STEP_TIMEOUT: /);
      assert.equal(s.retry?.failedAttempts, 1);
      assert.equal(s.retry?.nextAttemptAt, new Date(h.clock.now() + retryDelay(1)).toISOString(), 'tried again after the usual backoff');
    });
  }

  test('a tenant whose source hangs for all its due rotations holds at most half the pass\'s slots: another tenant\'s rotation still runs', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const [, deaf] = kinds;
    let timedOutBefore = -1;
    const quick = scriptedRotator('quick', { apply: async () => void (timedOutBefore = state.aborted) });
    const rot = node({ rotators: [deaf!.rotator, quick], stepTimeoutMs: DEADLINE_MS });
    // As many as the pass has slots: without a per-tenant bound they would take them all.
    for (let i = 0; i < 4; i++) await policy(h, rot, h.ctx, `HUNG_${i}`, 'deaf');
    const other = h.contextFor((await h.services.tenants.create('other-tenant')).id);
    await policy(h, rot, other, 'QUIET', 'quick');
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 60_000 }).where('tenant_id', '=', h.ctx.tenantId).execute();
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() }).where('tenant_id', '=', other.tenantId).execute();
    state.aborted = 0;

    const report = await rot.scheduler.tick();
    assert.equal(timedOutBefore, 0, 'QUIET ran before any of the first tenant\'s hung rotations reached its deadline');
    assert.deepEqual((await rot.service.history(other, 'QUIET', ENV)).map((r) => r.state), ['succeeded']);
    assert.equal(report.started, 5);
    for (let i = 0; i < 4; i++) {
      assert.deepEqual((await rot.service.history(h.ctx, `HUNG_${i}`, ENV)).map((r) => [r.state, r.error?.code]), [['rolled_back', 'STEP_TIMEOUT']]);
    }
  });

  test('a credential the source issues after generate\'s deadline is discarded there, not left behind', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const discarded: string[] = [];
    let answered!: () => void;
    const late = new Promise<void>((r) => (answered = r));
    const slow = scriptedRotator('slow-issuer', {
      generate: () => new Promise((resolve) => setTimeout(() => {
        resolve({ value: 'issued-too-late-0001', state: { id: 'cred-1' } });
        answered();
      }, DEADLINE_MS + 500)),
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
    await late;
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(discarded, ['cred-1:issued-too-late-0001']);
  });
});
