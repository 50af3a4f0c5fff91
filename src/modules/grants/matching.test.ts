import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesPattern } from './matching.ts';

test('name patterns: `*` is any run of characters (none included), everything else is literal and case-sensitive', () => {
  const cases: [pattern: string, name: string, matches: boolean][] = [
    ['*', 'ANYTHING', true],
    ['STRIPE_*', 'STRIPE_', true],
    ['STRIPE_*', 'STRIPE_LIVE_KEY', true],
    ['STRIPE_*', 'XSTRIPE_LIVE', false],
    ['STRIPE_*', 'stripe_live', false],
    ['*_KEY', 'STRIPE_KEY', true],
    ['*_KEY', 'STRIPE_KEYS', false],
    ['S*E*Y', 'STRIPE_KEY', true],
    ['S*E*Y', 'STRIPE_KEYS', false],
    ['**', 'X', true],
    ['A*A*A', 'AAA', true],
    ['A*A*A', 'AA', false],
    ['*AB', 'AAB', true],
    ['*AB*AB', 'ABAB', true],
    ['*AB*AB', 'ABA', false],
    // `.` and `-` are literal, not regular-expression syntax.
    ['stripe.live', 'stripe.live', true],
    ['stripe.live', 'stripeXlive', false],
    ['a-c', 'b', false],
    ['EXACT', 'EXACT', true],
    ['EXACT', 'EXACT_NOT', false],
  ];
  for (const [pattern, name, expected] of cases) assert.equal(matchesPattern(pattern, name), expected, `${pattern} ~ ${name}`);
});

test('a hostile pattern cannot stall the process: matching is linear in pattern × name, not exponential', () => {
  // As a backtracking regular expression, `*A*A*A*A*A*B` against 128 `A`s took ~30 s of one
  // process's only thread: every tenant's decisions waited. An admin of any tenant could store it
  // in a grant or an access-policy rule and name a secret to match.
  const name = 'A'.repeat(128);
  const start = performance.now();
  for (const stars of [5, 20, 63]) assert.equal(matchesPattern(`${'*A'.repeat(stars)}*B`, name), false);
  assert.equal(matchesPattern(`${'*A'.repeat(63)}*`, name), true);
  const ms = performance.now() - start;
  assert.ok(ms < 1_000, `took ${ms.toFixed(0)} ms`);
});
