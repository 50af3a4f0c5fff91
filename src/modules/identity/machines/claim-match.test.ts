import { test } from 'node:test';
import assert from 'node:assert/strict';
import { claimMatches, globMatch } from './claim-match.ts';

test('a glob star matches any run of characters and nothing else in a pattern is special', () => {
  const cases: Array<[string, string, boolean]> = [
    ['repo:acme/app:ref:refs/heads/*', 'repo:acme/app:ref:refs/heads/main', true],
    ['repo:acme/app:ref:refs/heads/*', 'repo:acme/app:ref:refs/heads/', true],
    ['repo:acme/app:ref:refs/heads/*', 'repo:acme/app:ref:refs/tags/v1', false],
    ['repo:acme/app:*', 'repo:acme/app-evil:ref:refs/heads/main', false],
    ['repo:acme/app:*', 'repo:acme/app:environment:prod', true],
    ['repo:acme/app*', 'repo:acme/app-evil:ref:refs/heads/main', true], // why docs say: end a prefix with its separator
    ['*:ref:refs/heads/main', 'repo:acme/app:ref:refs/heads/main', true],
    ['repo:*/app:*', 'repo:acme/app:pull_request', true],
    ['a*b*c', 'abc', true], ['a*b*c', 'aXbYc', true], ['a*b*c', 'acb', false], ['a*a', 'a', false], ['a*a', 'aa', true],
    ['*', '', true], ['**', 'x', true], ['', '', true], ['', 'x', false],
    // Regex and shell metacharacters are literal.
    ['refs/heads/.*', 'refs/heads/main', false], ['refs/heads/.*', 'refs/heads/.*', true], ['a?c', 'abc', false], ['[ab]', 'a', false],
    ['a\\*', 'a\\x', true], ['a+', 'aa', false], ['^main$', 'main', false],
    // Case and Unicode are compared as they are.
    ['Repo:*', 'repo:x', false], ['café*', 'cafe\u0301', false],
  ];
  for (const [pattern, text, expected] of cases) assert.equal(globMatch(pattern, text), expected, `${pattern} ~ ${text}`);
});

test('a pattern of many stars against a long adversarial claim is answered in linear time', () => {
  const pattern = `${'*a'.repeat(200)}*b`;
  const text = 'a'.repeat(200_000);
  const started = performance.now();
  assert.equal(globMatch(pattern, text), false);
  assert.equal(globMatch(`${'*a'.repeat(200)}*`, text), true);
  assert.equal(globMatch(`*${'a'.repeat(250)}b*`, text), false);
  const elapsed = performance.now() - started;
  // A backtracking matcher takes astronomically long on this; the piecewise one a few milliseconds.
  assert.ok(elapsed < 1_000, `took ${elapsed} ms`);
});

test('bound values may be one value or a list of them, and a list claim matches by any element', () => {
  const t: Array<[Parameters<typeof claimMatches>[0], unknown, unknown, boolean]> = [
    ['string', 'main', 'main', true], ['string', ['main', 'dev'], 'dev', true], ['string', ['main', 'dev'], 'prod', false],
    ['string', 'admins', ['users', 'admins'], true], ['string', ['a', 'b'], ['c', 'b'], true], ['string', ['a', 'b'], [], false],
    ['string', 1, 1, true], ['string', 1, '1', false], ['string', '1', 1, false], ['string', true, 'true', false], ['string', 'true', true, false],
    ['string', 'a', [['a']], false], ['string', 'a', { a: 'a' }, false], ['string', 'a', null, false], ['string', 'a', undefined, false],
    ['glob', 'refs/heads/*', 'refs/heads/main', true], ['glob', ['refs/heads/main', 'refs/tags/*'], 'refs/tags/v1', true],
    ['glob', 'refs/heads/*', ['refs/tags/v1', 'refs/heads/x'], true], ['glob', '*', 1, false], ['glob', '1*', 12, false],
    ['glob', '*', ['*'], true], ['glob', '*', [['x']], false], ['glob', '*', { toString: 'x' }, false], ['glob', '*', null, false],
    // Identities saved before 028: the bound value is one JSON value, compared whole.
    ['exact', ['a', 'b'], ['a', 'b'], true], ['exact', ['a', 'b'], 'a', false], ['exact', ['a', 'b'], ['b', 'a'], false], ['exact', 'a', ['a'], false],
    ['exact', 'refs/heads/*', 'refs/heads/main', false],
  ];
  for (const [type, bound, actual, expected] of t) assert.equal(claimMatches(type, bound, actual), expected, `${type} ${JSON.stringify(bound)} ~ ${JSON.stringify(actual)}`);
});

test('a piece between stars cannot borrow characters the pattern\'s end needs for itself', () => {
  // Each needs the middle piece and then, after it, the whole tail: the text holds them only overlapping.
  const cases: Array<[string, string]> = [
    ['x*ab*b', 'xab'],
    ['repo:acme/*:env:prod*:env:prod', 'repo:acme/app:env:prod'],
    ['*-signed*-signed', 'v1-signed'],
  ];
  for (const [pattern, text] of cases) {
    assert.equal(globMatch(pattern, text), false, `${pattern} ~ ${text}`);
    assert.equal(globMatch(pattern, `${text}${text.slice(-pattern.split('*').at(-1)!.length)}`), true, `${pattern} with the tail repeated`);
  }
});
