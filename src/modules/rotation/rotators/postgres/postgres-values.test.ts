import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPostgresRotator } from './index.ts';
import type { RotatorContext } from '../types.ts';

/** Alternating values are {"username","password"} JSON: one naming a field twice is ambiguous and used for nothing. */

const FIRST = 'pw_first_AAAAAAAAAAAAAAAA';
const SECOND = 'pw_second_BBBBBBBBBBBBBBB';
// Port 9 (discard): a step that got as far as connecting would fail with "cannot connect", not with the reason asserted.
const settings = { host: '127.0.0.1', port: 9, database: 'test', adminUser: 'postgres', strategy: 'alternating', roles: ['app_a', 'app_b'], timeoutMs: 500 };
const rc = (current: string | null): RotatorContext => ({
  tenantId: 't1', secretName: 'DB', environment: 'production', rotationId: 'r1', settings, currentState: {}, state: {},
  current, previous: null, rehearsal: false, signal: new AbortController().signal, resolve: async () => assert.fail('no secret is resolved'),
});

const ambiguous = [
  { what: 'password twice', value: `{"username":"app_a","password":"${FIRST}","password":"${SECOND}"}`, field: /"password" twice/ },
  { what: 'username twice', value: `{"username":"app_a","password":"${FIRST}","username":"app_b"}`, field: /"username" twice/ },
  { what: 'password twice, once escaped', value: `{"username":"app_a","pass\\u0077ord":"${FIRST}","password":"${SECOND}"}`, field: /"password" twice/ },
];

/** The step failed for the repeat, said which field, and quoted neither password. */
const refusedForRepeat = (field: RegExp) => (err: Error) => {
  assert.match(err.message, /names .* twice in one object/);
  assert.match(err.message, field);
  for (const v of [FIRST, SECOND]) assert.ok(!err.message.includes(v), 'no password in the reason');
  return true;
};

test('apply and test refuse an alternating value that names a field twice, before any connection', async (t) => {
  const rotator = createPostgresRotator();
  for (const c of ambiguous) {
    await t.test(c.what, async () => {
      await assert.rejects(rotator.apply(rc(null), c.value), refusedForRepeat(c.field));
      await assert.rejects(rotator.test(rc(null), c.value), refusedForRepeat(c.field));
    });
  }
});

test('generate refuses to pick the next role from a current value that names a field twice', async () => {
  const rotator = createPostgresRotator();
  for (const c of ambiguous) await assert.rejects(rotator.generate(rc(c.value)), refusedForRepeat(c.field), c.what);
  const fine = await rotator.generate(rc(JSON.stringify({ username: 'app_a', password: FIRST })));
  assert.equal((JSON.parse(fine.value!) as { username: string }).username, 'app_b', 'an unambiguous value still decides the role');
});

test('a repeated key the value format does not know is refused without quoting it', async () => {
  const value = `{"username":"app_a","password":"${FIRST}","${SECOND}":1,"${SECOND}":2}`;
  await assert.rejects(createPostgresRotator().apply(rc(null), value), (err: Error) => {
    assert.match(err.message, /names a field twice/);
    for (const v of [FIRST, SECOND]) assert.ok(!err.message.includes(v));
    return true;
  });
});
