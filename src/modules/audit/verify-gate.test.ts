import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createManualClock } from '../../platform/clock.ts';
import { createVerifyGate, VERIFY_MAX_AGE_MS } from './verify-gate.ts';

/**
 * A gate over a fake log: walks are counted and each one stays open until the test releases it, so
 * a test decides exactly what overlaps what.
 */
function fakeLog() {
  const clock = createManualClock();
  const state = { fingerprint: 'head-1', verdict: 'ok', walks: 0, open: 0, mostOpen: 0, fail: false };
  const releases: Array<() => void> = [];
  const walk = async (key: string | null) => {
    state.walks++;
    state.mostOpen = Math.max(state.mostOpen, ++state.open);
    const verdict = state.verdict;
    await new Promise<void>((resolve) => releases.push(resolve));
    state.open--;
    if (state.fail) throw new Error('database gone');
    return `${verdict} (key ${key}, walk ${state.walks})`;
  };
  const gate = createVerifyGate({ walk, fingerprint: async () => state.fingerprint, clock });
  /** Lets every walk started so far finish, once the callers queued so far have reached the gate. */
  const release = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    for (const r of releases.splice(0)) r();
  };
  return { gate, clock, state, release };
}

test('ten concurrent verify calls share one walk and get the same answer', async () => {
  const { gate, state, release } = fakeLog();
  const calls = Array.from({ length: 10 }, () => gate.verify('k'));
  await release();
  const answers = await Promise.all(calls);
  assert.equal(state.walks, 1);
  assert.deepEqual(new Set(answers), new Set(['ok (key k, walk 1)']));
});

test('a finished walk answers repeated calls until the head or checkpoints move, or the bound passes', async () => {
  const { gate, clock, state, release } = fakeLog();
  const first = gate.verify('k');
  await release();
  await first;
  clock.advance(VERIFY_MAX_AGE_MS - 1);
  assert.equal(await gate.verify('k'), 'ok (key k, walk 1)', 'nothing visible changed, inside the bound');
  assert.equal(state.walks, 1);

  state.fingerprint = 'head-2'; // an append or a checkpoint
  const afterAppend = gate.verify('k');
  await release();
  assert.equal(await afterAppend, 'ok (key k, walk 2)', 'a moved head is walked again at once');

  state.verdict = 'broken'; // an edit in place: the fingerprint stays
  assert.equal(await gate.verify('k'), 'ok (key k, walk 2)', 'within the bound the last walk still answers');
  clock.advance(VERIFY_MAX_AGE_MS);
  const late = gate.verify('k');
  await release();
  assert.equal(await late, 'broken (key k, walk 3)', 'once the bound has passed, the edit is reported');
});

test('a call arriving while a walk older than the bound runs waits for the next walk, which all such calls share; walks never overlap', async () => {
  const { gate, clock, state, release } = fakeLog();
  const old = gate.verify('k');
  await new Promise((resolve) => setImmediate(resolve));
  state.verdict = 'broken';
  clock.advance(VERIFY_MAX_AGE_MS);
  const late = [gate.verify('k'), gate.verify('k'), gate.verify('k')];
  await release();
  assert.equal(await old, 'ok (key k, walk 1)');
  await release();
  assert.deepEqual(await Promise.all(late), Array(3).fill('broken (key k, walk 2)'));
  assert.deepEqual([state.walks, state.mostOpen], [2, 1]);
});

test('a walk that fails is not kept: its callers get the error, and the next call walks again', async () => {
  const { gate, state, release } = fakeLog();
  state.fail = true;
  const failing = [gate.verify('k'), gate.verify('k')];
  await release();
  for (const call of failing) await assert.rejects(call, /database gone/);
  assert.equal(state.walks, 1);
  state.fail = false;
  const retry = gate.verify('k');
  await release();
  assert.equal(await retry, 'ok (key k, walk 2)');
});

test('answers for different trusted keys (or none, while sealed) are never shared', async () => {
  const { gate, state, release } = fakeLog();
  const calls = [gate.verify('k'), gate.verify(null), gate.verify('other')];
  await release();
  await release();
  await release();
  assert.deepEqual(await Promise.all(calls), ['ok (key k, walk 1)', 'ok (key null, walk 2)', 'ok (key other, walk 3)']);
  assert.equal(state.mostOpen, 1, 'one walk at a time, whatever the key');
  assert.equal(await gate.verify('other'), 'ok (key other, walk 3)', 'the last walk answers its own key');
  const k = gate.verify('k');
  await release();
  assert.equal(await k, 'ok (key k, walk 4)', 'only the last walk is kept');
});

test('a clock stepped back does not stretch the bound', async () => {
  const { gate, clock, state, release } = fakeLog();
  const first = gate.verify('k');
  await release();
  await first;
  state.verdict = 'broken';
  clock.advance(-60_000);
  const again = gate.verify('k');
  await release();
  assert.equal(await again, 'broken (key k, walk 2)');
});
