import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { rotationFor } from '../../../test/helpers/rotation.ts';
import { createRotationRepository } from './repository.ts';

const ENV = 'staging';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/**
 * Leadership keeps the scheduler's work on one node, but a leader whose lease ran out mid-pass and the
 * new leader can read the same due row. What keeps a rotation from running twice then is the claim:
 * each is a compare-and-set on the time it read, so of two readers exactly one claims.
 */
describeEachDialect('rotation scheduler: a due run, an expiry run and a retry are each claimed once', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('two nodes that read the same due row: the first claim matches, the second matches nothing', async () => {
    const rot = rotationFor(h);
    await h.services.secrets.create(h.ctx, { name: 'CLAIMED_ONCE', owner: 'ops', expiresAt: new Date(h.clock.now() + 10 * DAY).toISOString() });
    await rot.service.setPolicy(h.ctx, 'CLAIMED_ONCE', ENV, { rotator: 'random', intervalMs: HOUR, expiryLeadMs: 7 * DAY });
    await rot.scheduler.stop();
    h.clock.advance(3 * DAY + HOUR);
    const repo = createRotationRepository(h.storage.db);
    const now = h.clock.now();
    const mine = <T extends { secret_name: string }>(rows: T[]) => rows.filter((p) => p.secret_name === 'CLAIMED_ONCE');

    const [due] = mine(await repo.duePolicies(now, 50, 50));
    const claimRun = () => repo.claimRun(due!.id, due!.next_run_at!, now + HOUR, now, { trigger: 'schedule', until: now + 60_000 });
    assert.deepEqual([await claimRun(), await claimRun()], [true, false], 'due run');

    const [expiring] = mine(await repo.expiringPolicies(now, 50, 50));
    const claimExpiry = () => repo.claimExpiry(expiring!.id, expiring!.expiry_claimed_for, expiring!.due_at, now + 60_000, now);
    assert.deepEqual([await claimExpiry(), await claimExpiry()], [true, false], 'expiry run');

    h.clock.advance(2 * 60_000);
    const later = h.clock.now();
    const [retry] = mine(await repo.retriesDue(later, 50, 50));
    const claimRetry = () => repo.claimRetry(retry!.id, retry!.retry_at!, later + 60_000, later);
    assert.deepEqual([await claimRetry(), await claimRetry()], [true, false], 'retry');
  });
});
