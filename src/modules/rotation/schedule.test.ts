import { test } from 'node:test';
import assert from 'node:assert/strict';
import { followingRun, nextRun, parseSchedule, scheduleProblem } from './schedule.ts';

const NOW = Date.UTC(2030, 0, 1);
const code = (fn: () => unknown) => {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};

test('a cron schedule that fires more often than once a minute is refused, as an interval that short is', () => {
  for (const cron of ['* * * * * *', '*/10 * * * * *', '0,30 * * * * *', '0-5 * * * * *', '  *   * * * * * ', '* * * * * * *', '? * * * * *']) {
    assert.equal(code(() => parseSchedule({ cron }, NOW)), 'VALIDATION_FAILED', cron);
  }
});

test('a cron schedule that never fires is refused rather than stored as a policy that silently never runs', () => {
  for (const cron of ['0 0 30 2 *', '0 0 31 4 *', '0 0 0 31 11 * 2020']) {
    assert.equal(code(() => parseSchedule({ cron }, NOW)), 'VALIDATION_FAILED', cron);
  }
});

test('cron schedules at most once a minute are kept as given', () => {
  const after = Date.UTC(2030, 0, 1, 12, 0, 30);
  for (const [cron, next] of [
    ['* * * * *', Date.UTC(2030, 0, 1, 12, 1, 0)],
    ['30 * * * * *', Date.UTC(2030, 0, 1, 12, 1, 30)],
    ['15 */5 * * * *', Date.UTC(2030, 0, 1, 12, 5, 15)],
    ['@hourly', Date.UTC(2030, 0, 1, 13, 0, 0)],
    ['0 0 29 2 *', Date.UTC(2032, 1, 29)],
  ] as const) {
    assert.deepEqual(parseSchedule({ cron }, after), { kind: 'cron', schedule: cron });
    assert.equal(nextRun('cron', cron, after), next, cron);
  }
});

test('the run after a due one is the next slot, never within a minute of it, however late the pass or whatever is stored', () => {
  const due = Date.UTC(2030, 0, 1, 12, 0, 0);
  assert.equal(followingRun('cron', '* * * * *', due, due + 10_000), Date.UTC(2030, 0, 1, 12, 1, 0), 'a late pass loses no slot');
  assert.equal(followingRun('cron', '* * * * * *', due, due + 10_000), Date.UTC(2030, 0, 1, 12, 1, 0), 'a stored every-second cron: once a minute');
  assert.equal(followingRun('cron', '* * * * *', due, due + 3_600_000 + 5), Date.UTC(2030, 0, 1, 13, 1, 0), 'after downtime: the first slot after now');
  assert.equal(followingRun('interval', '1000', due, due), due + 60_000, 'a stored one-second interval: once a minute');
  assert.equal(scheduleProblem('cron', '* * * * *'), null);
  assert.match(scheduleProblem('cron', '*/5 * * * * *')!, /more than once a minute/);
  assert.match(scheduleProblem('interval', '1000')!, /shorter than a minute/);
});
