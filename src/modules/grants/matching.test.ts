import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesPattern, rolesFor, type LiveGrant } from './matching.ts';
import { cpuMs } from '../../../test/helpers/cpu-time.ts';

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
  const { ms } = cpuMs(() => {
    for (const stars of [5, 20, 63]) assert.equal(matchesPattern(`${'*A'.repeat(stars)}*B`, name), false);
    assert.equal(matchesPattern(`${'*A'.repeat(63)}*`, name), true);
  });
  assert.ok(ms < 1_000, `took ${ms.toFixed(0)} ms`);
});

test('which grants count for a request: environment, name, secret-wide and tenant-level actions, expiry', () => {
  const grant = (role: string, over: Partial<LiveGrant> = {}): LiveGrant => ({ role, environments: null, namePatterns: null, expiresAt: null, revokedAt: null, ...over });
  const grants = [
    grant('viewer'),
    grant('builder', { environments: ['staging'] }),
    grant('secret-admin', { namePatterns: ['STRIPE_*'] }),
    grant('revealer', { expiresAt: 1_000 }),
    grant('auditor', { revokedAt: 1 }),
  ];
  const cases: [what: string, request: Parameters<typeof rolesFor>[1], roles: string[]][] = [
    ['a secret in staging', { now: 0, environment: 'staging', secretName: 'STRIPE_KEY' }, ['builder', 'revealer', 'secret-admin', 'viewer']],
    ['a secret in production', { now: 0, environment: 'production', secretName: 'DB_PASSWORD' }, ['revealer', 'viewer']],
    ['listing: the environment does not narrow', { now: 0, secretName: 'DB_PASSWORD', listOnly: true }, ['builder', 'revealer', 'viewer']],
    // Secret-wide (metadata writes, deleting a whole secret): a matching name counts, an environment never does.
    ['a whole secret the name patterns cover', { now: 0, secretName: 'STRIPE_KEY' }, ['revealer', 'secret-admin', 'viewer']],
    ['a whole secret they do not', { now: 0, secretName: 'DB_PASSWORD' }, ['revealer', 'viewer']],
    ['the tenant itself', { now: 0 }, ['revealer', 'viewer']],
    ['at the expiry millisecond', { now: 1_000, environment: 'staging', secretName: 'X' }, ['builder', 'viewer']],
    ['one millisecond before', { now: 999, environment: 'staging', secretName: 'X' }, ['builder', 'revealer', 'viewer']],
  ];
  for (const [what, request, roles] of cases) assert.deepEqual(rolesFor(grants, request), roles, what);
});
