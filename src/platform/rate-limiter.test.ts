import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRateLimiter } from './rate-limiter.ts';
import { createManualClock } from './clock.ts';
import { cpuMs } from '../../test/helpers/cpu-time.ts';

test('a hit stays cheap when more keys are live than maxKeys, so a flood of addresses cannot stall every request', () => {
  const clock = createManualClock();
  const limiter = createRateLimiter({ limit: 5, windowMs: 60_000, clock, maxKeys: 1_000 });
  const { ms: elapsed } = cpuMs(() => {
    for (let i = 0; i < 20_000; i++) limiter.hit(`flood:${i}`);
    for (let i = 0; i < 20_000; i++) limiter.hit(`victim:${i % 10}`);
  });
  assert.ok(elapsed < 1_000, `40,000 hits took ${Math.round(elapsed)} ms`);
});

test('a flood of other keys never evicts a live counter, so it cannot reset a victim budget', () => {
  const clock = createManualClock();
  const limiter = createRateLimiter({ limit: 3, windowMs: 60_000, clock, maxKeys: 100 });
  for (let i = 0; i < 3; i++) assert.equal(limiter.hit('victim').allowed, true);
  for (let i = 0; i < 1_000; i++) { clock.advance(10); limiter.hit(`flood:${i}`); }
  assert.equal(limiter.hit('victim').allowed, false);
});

test('a key counts again once its attempts leave the window, also after others were pruned around it', () => {
  const clock = createManualClock();
  const limiter = createRateLimiter({ limit: 2, windowMs: 1_000, clock, maxKeys: 4 });
  limiter.hit('a'); limiter.hit('a');
  assert.equal(limiter.hit('a').allowed, false);
  clock.advance(500);
  for (let i = 0; i < 10; i++) limiter.hit(`other:${i}`);
  assert.deepEqual(limiter.hit('a'), { allowed: false, retryAfterMs: 500 });
  clock.advance(500);
  assert.equal(limiter.hit('a').allowed, true);
});
