import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { TenantContext } from '../shared/context.ts';
import { createPolicyEngine } from './engine.ts';
import { parsePolicyTestCases, runPolicyTests } from './policy-test-runner.ts';
import { MAX_NESTING, MAX_OPERATORS_PER_POLICY, complexityErrors } from './complexity.ts';
import { machineContext } from '../../../test/helpers/identities.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const when = (condition: string) => `permit (principal, action, resource) when { ${condition} };`;

/** Texts that overflowed Cedar's wasm stack before the shape check: each broke every tenant's decisions. */
const CRASHERS: Record<string, string> = {
  'brackets 300 deep': when(`${'('.repeat(300)}true${')'.repeat(300)}`),
  'sets 300 deep': when(`${'['.repeat(300)}1${']'.repeat(300)} == []`),
  '5,000 conjuncts': when(Array(5000).fill('true').join(' && ')),
  '3,000 additions': when(`${Array(3000).fill('1').join(' + ')} > 0`),
  '1,000 nested ifs': when(`${'if true then '.repeat(1000)}true${' else false'.repeat(1000)}`),
  // Chains that never go deep in brackets: each access is still a node of a nested tree.
  '3,000 attribute accesses': when(`context${'.a'.repeat(3000)} == 1`),
  '3,000 index accesses': when(`context${'["a"]'.repeat(3000)} == 1`),
  '2,000 method calls': when(`context.sourceIp${'.isIpv4()'.repeat(2000)}`),
  // Cedar ends a comment at CR: the policy after it is real, however deep.
  'a policy behind a comment ended by CR': `// note\r${when(`${'('.repeat(300)}true${')'.repeat(300)}`)}\n`,
};

describeEachDialect('hostile tenant policies', (dialect) => {
  let h: Harness;
  let reader: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'PAY_KEY', owner: 'ops', classification: 'restricted' });
    await h.services.values.write(h.ctx, 'PAY_KEY', 'production', { value: 'pay-key-value' });
    reader = (await machineContext(h, 'runner', { role: 'builder', environments: ['production'] })).ctx();
  });
  after(() => h.close());

  test('a policy too deep or too long for Cedar is refused before Cedar sees it, and every tenant keeps deciding', async () => {
    const other = await h.services.tenants.create(`mallory-${dialect}`);
    const mallory = h.contextFor(other.id);
    for (const [name, text] of Object.entries(CRASHERS)) {
      assert.ok(Buffer.byteLength(text) < 64 * 1024, `${name} fits the size limit`);
      const dryRun = await h.services.policies.validate(mallory, text);
      assert.equal(dryRun.valid, false, name);
      assert.match(dryRun.errors.join(), /at most (32 levels|200 are allowed)|control character/, name);
      assert.equal(await codeOf(h.services.policies.put(mallory, { text })), 'POLICY_INVALID', name);
      // A fresh decision (new source address: not from any cache) in the victim tenant still works.
      h.clock.advance(1_000);
      assert.equal(await codeOf(h.services.values.read({ ...reader, sourceIp: `127.0.1.${Object.keys(CRASHERS).indexOf(name) + 1}` }, 'PAY_KEY', 'production')), 'ok', name);
    }
  });

  test('a file over 64 KiB is refused by the dry run and the offline test runner as by apply: they never call valid what apply refuses', async () => {
    // Under the route's 65,536-character bound, but over 64 KiB once encoded (two bytes a character).
    const text = `// ${'é'.repeat(40_000)}\n@id("list") permit (principal, action == Keyhold::Action::"list", resource);`;
    assert.ok(text.length < 65_536 && Buffer.byteLength(text) > 64 * 1024);
    assert.equal(await codeOf(h.services.policies.put(h.ctx, { text })), 'POLICY_INVALID');
    const res = await h.app.inject({ method: 'POST', url: '/v1/policies/validate', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { text } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().valid, false, res.body);
    assert.match(res.json().errors.join(), /at most 65536 bytes/);
    const cases = parsePolicyTestCases({ cases: [{ name: 'list', principal: { type: 'user' }, action: 'list', secret: { name: 'K' }, expect: 'allow' }] });
    assert.throws(() => runPolicyTests(createPolicyEngine(), text, cases), /at most 65536 bytes/);
  });

  test('a policy template is refused: nothing would ever link it, so it would be stored as active and never apply', async () => {
    const text = '@id("nobody-reveals") forbid (principal == ?principal, action == Keyhold::Action::"reveal", resource);';
    const res = await h.app.inject({ method: 'PUT', url: '/v1/policies', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { text } });
    assert.deepEqual([res.statusCode, res.json().error.code], [400, 'POLICY_INVALID']);
    assert.match(res.json().error.message + JSON.stringify(res.json().error.details ?? {}), /template/);
  });

  test('a forbid that errors when evaluated denies (fail closed) and the denial names it', async () => {
    // Type-checks, then overflows for any weekday >= 1; Cedar skips erroring policies, so it would have allowed.
    const text = `@id("no-restricted-use")
forbid (principal is Keyhold::Machine, action == Keyhold::Action::"use", resource)
when { context.classification == "restricted" && context.weekday + 9223372036854775807 > 0 };`;
    assert.equal((await h.services.policies.put(h.ctx, { text, comment: 'block restricted use' })).active, true);
    assert.equal(new Date(h.clock.now()).getUTCDay(), 1, 'the fake clock is on a Monday');
    assert.equal(await codeOf(h.services.values.read({ ...reader, sourceIp: '127.0.2.1' }, 'PAY_KEY', 'production')), 'FORBIDDEN');
    const denial = await h.storage.db.selectFrom('audit_events').select(['context']).where('action', '=', 'authz.use').orderBy('seq', 'desc').executeTakeFirstOrThrow();
    assert.match(JSON.parse(denial.context).policies, /error:tenant:no-restricted-use/);
    await h.services.policies.put(h.ctx, { text: '' });
    assert.equal(await codeOf(h.services.values.read({ ...reader, sourceIp: '127.0.2.2' }, 'PAY_KEY', 'production')), 'ok');
  });
});

test('the shape check counts operators per policy and brackets, not strings or comments', () => {
  const deep = (n: number) => when(`${'('.repeat(n)}true${')'.repeat(n)}`);
  assert.deepEqual(complexityErrors(deep(MAX_NESTING - 2)), []); // the policy's own braces and parentheses count too
  assert.equal(complexityErrors(deep(MAX_NESTING + 1)).length, 1);
  // n operators in all: the head's `(` is one (a bracket that is not a brace), the rest are `&&`.
  const chain = (n: number) => when(Array(n).fill('true').join(' && '));
  assert.deepEqual(complexityErrors(chain(MAX_OPERATORS_PER_POLICY)), []);
  assert.match(complexityErrors(chain(MAX_OPERATORS_PER_POLICY + 1))[0]!, /^policy 1: 201 operators/);
  assert.match(complexityErrors(when(`context${'.a'.repeat(MAX_OPERATORS_PER_POLICY)} == 1`))[0]!, /operators/, 'member accesses count');
  // Limits are per policy: many modest policies in one file are fine, the second of two bad ones is named.
  assert.deepEqual(complexityErrors(Array(50).fill(chain(150)).join('\n')), []);
  assert.match(complexityErrors(`${chain(10)}\n${chain(300)}`)[0]!, /^policy 2:/);
  // Brackets and operators inside strings and comments are text, not structure.
  assert.deepEqual(complexityErrors(when(`resource.name == "${'(('.repeat(100)}&&||"`) + `\n// ${'('.repeat(100)} && && &&`), []);
  assert.deepEqual(complexityErrors(when(`resource.name == "a\\"((((((((((((((((((((((((((((((((((((((((("`)), []);
  // Control characters other than tab and line ends are refused outright; CRLF files are fine.
  assert.match(complexityErrors(when('true\u000b'))[0]!, /control character \(U\+000B\)/);
  assert.deepEqual(complexityErrors(`// a comment\r\n${when('context.hour < 9')}\r\n`), []);
});
