import { after, before, describe, test } from 'node:test';
import type pg from 'pg';
import type { StatementBounds } from '../../src/storage/postgres/postgres-dialect.ts';
import { skipReason } from './databases.ts';
import { createHarness, type Harness } from './harness.ts';
import { otherSession } from './pg-lock-waits.ts';

/** What a suite of `describeWithOtherSession` reaches, once its `before` has run. */
export interface OtherSessionSuite {
  h(): Harness;
  /** A session of its own in the harness's schema, outside Keyhold's pool and bounds, to hold locks with. */
  other(): { client: pg.Client; pid: number };
}

/**
 * A suite over a PostgreSQL harness whose pool has `bounds`, and another session beside it: for
 * tests of what Keyhold does while someone else holds a lock. Without PostgreSQL it is skipped,
 * and fails under CI=true.
 */
export function describeWithOtherSession(name: string, bounds: StatementBounds, body: (suite: OtherSessionSuite) => void): void {
  describe(name, async () => {
    const skip = await skipReason('postgres');
    if (skip) {
      test('skipped', { skip }, () => {});
      return;
    }
    let h: Harness;
    let other: { client: pg.Client; pid: number };
    before(async () => {
      h = await createHarness('postgres', { bounds });
      other = await otherSession(h.database.schema!);
    });
    after(async () => {
      await other?.client.end();
      await h?.close();
    });
    body({ h: () => h, other: () => other });
  });
}
