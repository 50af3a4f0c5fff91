import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createPolicyEngine } from './engine.ts';
import { parsePolicyTestCases, parsePolicyTestTenant, runPolicyTests } from './policy-test-runner.ts';

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

test('a case the server can never decide is refused, never passed: tests must not vouch for requests that do not happen', () => {
  // The server decides admin, audit:read and export on the tenant, with no secret, environment or
  // classification. This forbid never fires there; a case that made it fire would be a false assurance.
  const text = '@id("no-restricted-export") forbid (principal, action == Keyhold::Action::"export", resource) when { context.classification == "restricted" };';
  assert.throws(() => runPolicyTests(createPolicyEngine(), text, parsePolicyTestCases({ cases: [
    { name: 'export of a restricted secret', principal: { type: 'user' }, action: 'export', secret: { name: 'K', classification: 'restricted' }, roles: ['secret-admin'], expect: 'deny' },
  ] })), /case 1 \("export of a restricted secret"\): export is decided on the tenant: it takes no "secret"/);
  assert.throws(() => parsePolicyTestCases({ cases: [
    { name: 'admin in production', principal: { type: 'user' }, action: 'admin', environment: 'production', roles: ['tenant-admin'], mfaFresh: true, expect: 'deny' },
  ] }), /admin is decided on the tenant: it takes no "environment"/);
  const base = { principal: { type: 'user' }, action: 'use', secret: { name: 'K' }, environment: 'production', roles: ['builder'], expect: 'deny' };
  const impossible = parsePolicyTestCases({ cases: [
    { ...base, name: 'a machine with a fresh factor', principal: { type: 'machine' }, mfaFresh: true },
    { ...base, name: 'a machine with a factor age', principal: { type: 'machine' }, mfaAgeSeconds: 30 },
    { ...base, name: 'fresh without any factor', mfaFresh: true, mfaAgeSeconds: -1 },
    { ...base, name: 'escrow on an action escrow never covers', action: 'delete', roles: ['secret-admin'], viaRequest: true },
    { ...base, name: 'escrow without an environment', environment: undefined, approvalRequired: true },
  ] });
  const results = runPolicyTests(createPolicyEngine(), '', impossible);
  for (const r of results) assert.deepEqual([r.actual, r.pass], ['error', false], `${r.name}: ${JSON.stringify(r)}`);
  assert.match(results[0]!.error!, /machines have no second factor/);
  assert.match(results[2]!.error!, /mfaFresh/);
  assert.match(results[3]!.error!, /escrow/);
});

test('a policy naming a secret entity by its name never fires on the server, so its test case cannot pass either', () => {
  // The server's Secret entities are the secrets' ids (random UUIDs), never their names: this forbid
  // never stops a reveal there. A runner that made the entity id the name would vouch for it.
  const text = '@id("no-stripe-reveal") forbid (principal, action == Keyhold::Action::"reveal", resource == Keyhold::Secret::"STRIPE_KEY");\n'
    + '@id("no-reveal-by-id") forbid (principal, action == Keyhold::Action::"reveal", resource == Keyhold::Secret::"0b6f1c3e-stripe-id");';
  const base = { principal: { type: 'user' }, action: 'reveal', environment: 'production', roles: ['revealer'], mfaFresh: true, mfaAgeSeconds: 1 };
  const [byName, byId, typo] = runPolicyTests(createPolicyEngine(), text, parsePolicyTestCases({ cases: [
    { ...base, name: 'only the name', secret: { name: 'STRIPE_KEY' }, expect: 'deny' },
    { ...base, name: 'the secret id as the server has it', secret: { name: 'STRIPE_KEY', id: '0b6f1c3e-stripe-id' }, expect: 'deny' },
    { ...base, name: 'an id that is not text', secret: { name: 'K', id: 7 }, expect: 'deny' },
  ] }));
  assert.deepEqual([byName!.actual, byName!.pass], ['allow', false], JSON.stringify(byName));
  assert.deepEqual([byId!.actual, byId!.pass, byId!.reasons], ['deny', true, ['tenant:no-reveal-by-id']], JSON.stringify(byId));
  assert.deepEqual([typo!.actual, typo!.pass], ['error', false], JSON.stringify(typo));
});

test('a case with a classification no secret can have is an error, never a pass: a typo would test a request the server never sees', () => {
  // The example forbids machines using restricted secrets from outside 10.20.0.0/16; "Restricted" would slip past it.
  const base = { principal: { type: 'machine' }, action: 'use', environment: 'staging', roles: ['builder'], sourceIp: '192.0.2.7' };
  const [typo, known] = runPolicyTests(createPolicyEngine(), policies, parsePolicyTestCases({ cases: [
    { ...base, name: 'a typo', secret: { name: 'DB_ROOT', classification: 'Restricted' }, expect: 'allow' },
    { ...base, name: 'a classification there is', secret: { name: 'DB_ROOT', classification: 'confidential' }, expect: 'allow' },
  ] }));
  assert.deepEqual([typo!.actual, typo!.pass], ['error', false], JSON.stringify(typo));
  assert.match(typo!.error!, /secret.classification must be one of public, internal, confidential, restricted/);
  assert.deepEqual([known!.actual, known!.pass], ['allow', true], JSON.stringify(known));
});

test('a policy naming the tenant is tested in that tenant, as the server decides it, or the run stops', () => {
  // On the server this permit lets everyone of tenant t-acme list every secret: a runner deciding in a tenant of its
  // own would answer deny, and a case expecting deny would pass while the server allows.
  const text = '@id("everyone-lists") permit (principal in Keyhold::Tenant::"t-acme", action == Keyhold::Action::"list", resource);';
  const file = { tenant: 't-acme', cases: [{ name: 'no role, no listing', principal: { type: 'user' }, action: 'list', secret: { name: 'K' }, expect: 'deny' }] };
  const server = createPolicyEngine();
  const checked = server.validate(text);
  assert.ok(checked.ok);
  server.install('t-acme', 1, checked.policies);
  const onServer = server.decide({
    tenantId: 't-acme', principal: { type: 'user', id: 'u1', name: 'u1', tenantId: 't-acme' }, action: 'list',
    resource: { type: 'secret', id: 's1', name: 'K', classification: 'internal', owner: '', tags: [] },
    context: { environment: '', classification: 'internal', identityType: 'user', roles: [], mfaFresh: false, mfaAgeSeconds: -1, hour: 12, weekday: 2, sourceIp: '127.0.0.1' },
  });
  assert.equal(onServer.allowed, true);
  const cases = parsePolicyTestCases(file);
  assert.throws(() => runPolicyTests(createPolicyEngine(), text, cases), /names the tenant "t-acme": give your tenant's id as "tenant" in the test file/);
  const [r] = runPolicyTests(createPolicyEngine(), text, cases, parsePolicyTestTenant(file));
  assert.deepEqual([r!.actual, r!.pass, r!.reasons], ['allow', false, ['tenant:everyone-lists']]);
  assert.equal(parsePolicyTestTenant({ cases: file.cases }), undefined);
  assert.throws(() => parsePolicyTestTenant({ ...file, tenant: 7 }), /"tenant" must be your tenant's id/);
  assert.throws(() => parsePolicyTestTenant({ ...file, tenant: '' }), /"tenant" must be your tenant's id/);
});

test('one engine running two policy files within one millisecond decides each case by its own file', (t) => {
  t.mock.timers.enable({ apis: ['Date'], now: 1_700_000_000_000 });
  const engine = createPolicyEngine();
  const cases = parsePolicyTestCases({ cases: [{ name: 'list', principal: { type: 'user' }, action: 'list', secret: { name: 'K' }, roles: ['viewer'], expect: 'allow' }] });
  const [forbidden] = runPolicyTests(engine, '@id("no-list") forbid (principal, action == Keyhold::Action::"list", resource);', cases);
  const [builtins] = runPolicyTests(engine, '@id("other") forbid (principal, action == Keyhold::Action::"use", resource);', cases);
  assert.deepEqual([forbidden!.actual, builtins!.actual, builtins!.reasons], ['deny', 'allow', ['role:viewer']]);
});
