import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createPolicyEngine } from './engine.ts';
import { parsePolicyTestCases, runPolicyTests } from './policy-test-runner.ts';

const policies = readFileSync(new URL('../../../docs/examples/tenant-policies.cedar', import.meta.url), 'utf8');
const cases = parsePolicyTestCases(JSON.parse(readFileSync(new URL('../../../docs/examples/tenant-policies.test.json', import.meta.url), 'utf8')));

test('the documented example tenant policies validate and pass their own test file', () => {
  const results = runPolicyTests(createPolicyEngine(), policies, cases);
  for (const r of results) assert.equal(r.pass, true, `${r.name}: expected ${r.expected}, got ${r.actual} (${r.reasons.join(', ')})`);
});

test('the same cases fail where the tenant policies are absent (the tests really exercise them)', () => {
  const results = runPolicyTests(createPolicyEngine(), '', cases);
  const failed = results.filter((r) => !r.pass).map((r) => r.name);
  assert.deepEqual(failed, [
    'the same reveal in production needs a factor from the last 5 minutes',
    'but not from anywhere else',
    'production use at 03:00 on a Tuesday is refused',
  ]);
});

test('a policy file that does not validate is reported, never evaluated', () => {
  assert.throws(() => runPolicyTests(createPolicyEngine(), 'permit (principal, action, resource) when { context.nosuch };', cases), /does not validate/);
  assert.throws(() => runPolicyTests(createPolicyEngine(), 'permit (principal, action, resource', cases), /does not validate/);
});

test('malformed test cases are refused with the case named', () => {
  assert.throws(() => parsePolicyTestCases({ cases: [] }), /non-empty/);
  assert.throws(() => parsePolicyTestCases({ cases: [{ name: 'x', principal: { type: 'user' }, action: 'fly', expect: 'allow' }] }), /case 1 \("x"\): unknown action/);
  assert.throws(() => parsePolicyTestCases({ cases: [{ name: 'x', principal: { type: 'user' }, action: 'reveal', expect: 'allow' }] }), /needs a "secret"/);
});

test('a policy file that repeats an @id is refused by the test runner too, never evaluated with one of them dropped', () => {
  const text = '@id("no-prod-reveal") forbid (principal, action == Keyhold::Action::"reveal", resource);\n'
    + '@id("no-prod-reveal") permit (principal, action == Keyhold::Action::"list", resource);';
  assert.throws(() => runPolicyTests(createPolicyEngine(), text, cases), /does not validate: .*duplicate @id\("no-prod-reveal"\)/);
});

test('every policy of a file takes part in decisions, named or not', () => {
  const text = '@id("2") forbid (principal, action == Keyhold::Action::"use", resource);\npermit (principal, action == Keyhold::Action::"list", resource);';
  const [use, list] = runPolicyTests(createPolicyEngine(), text, parsePolicyTestCases({ cases: [
    { name: 'use', principal: { type: 'user' }, action: 'use', secret: { name: 'K' }, roles: ['builder'], expect: 'deny' },
    { name: 'list', principal: { type: 'user' }, action: 'list', secret: { name: 'K' }, expect: 'allow' },
  ] }));
  assert.deepEqual([use!.pass, use!.reasons, list!.pass, list!.reasons], [true, ['tenant:2'], true, ['tenant:#2']]);
});

test('a case with an unknown role or a wrongly typed field is an error, never a pass, even when it expects deny', () => {
  const base = { principal: { type: 'user' }, action: 'reveal', secret: { name: 'K' }, environment: 'production', expect: 'deny' };
  const bad = parsePolicyTestCases({ cases: [
    { ...base, name: 'typo in a role', roles: ['revealr'] },
    { ...base, name: 'hour as text', roles: ['revealer'], hour: '3' },
    { ...base, name: 'mfaFresh as text', roles: ['revealer'], mfaFresh: 'yes' },
    { ...base, name: 'tags as text', roles: ['revealer'], secret: { name: 'K', tags: 'pci' } },
    { ...base, name: 'not an address', roles: ['revealer'], sourceIp: 'office' },
    { ...base, name: 'a role that is not text', roles: [7] },
  ] });
  const results = runPolicyTests(createPolicyEngine(), policies, bad);
  for (const r of results) {
    assert.deepEqual([r.pass, r.actual], [false, 'error'], `${r.name}: ${JSON.stringify(r)}`);
    assert.ok(r.error && r.error.length > 0, r.name);
  }
  assert.match(results[0]!.error!, /unknown role "revealr"/);
  assert.match(results[1]!.error!, /hour must be a whole number 0-23, not "3"/);
  const good = runPolicyTests(createPolicyEngine(), policies, parsePolicyTestCases({ cases: [
    { ...base, name: 'well typed', roles: ['revealer'], hour: 3, mfaFresh: true, mfaAgeSeconds: 30, sourceIp: '::ffff:10.20.0.1', secret: { name: 'K', tags: ['pci'] }, expect: 'allow' },
  ] }));
  assert.deepEqual(good.map((r) => [r.actual, r.pass]), [['allow', true]]);
});
