import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHttpRotator } from './index.ts';
import type { RotatorContext } from '../types.ts';

/** The http rotator against a fetch that answers each path with a fixed text; `calls` keeps the paths asked. */
function rotatorAnswering(answers: Record<string, { status?: number; text: string }>) {
  const calls: string[] = [];
  const fetch = (async (url: URL) => {
    calls.push(url.pathname);
    const a = answers[url.pathname] ?? { status: 404, text: '{}' };
    return new Response(a.text, { status: a.status ?? 200, headers: { 'content-type': 'application/json' } });
  }) as typeof globalThis.fetch;
  return { rotator: createHttpRotator({ fetch }), calls };
}

const rc = (state: Record<string, unknown> = {}): RotatorContext => ({
  tenantId: 't1', secretName: 'API_KEY', environment: 'production', rotationId: 'r1', settings: { url: 'http://127.0.0.1:9/keys' },
  currentState: {}, state, current: null, previous: null, rehearsal: false, signal: new AbortController().signal,
  resolve: async () => assert.fail('no secret is resolved'),
});

const FIRST = 'cred_first_value_AAAA';
const SECOND = 'cred_second_value_BBBB';

test('an /issue answer naming a field twice is refused, naming the field and neither value, and nothing else is called', async (t) => {
  const cases = [
    { what: 'value twice', text: `{"id":"c1","value":"${FIRST}","value":"${SECOND}"}`, field: /"value" twice/ },
    { what: 'id twice', text: `{"id":"${FIRST}","value":"v-1234567890","id":"${SECOND}"}`, field: /"id" twice/ },
    { what: 'value twice, once escaped', text: `{"id":"c1","\\u0076alue":"${FIRST}","value":"${SECOND}"}`, field: /"value" twice/ },
  ];
  for (const c of cases) {
    await t.test(c.what, async () => {
      const { rotator, calls } = rotatorAnswering({ '/keys/issue': { text: c.text } });
      await assert.rejects(rotator.generate(rc()), (err: Error) => {
        assert.match(err.message, /rotation endpoint \/issue answered JSON that names/);
        assert.match(err.message, c.field);
        for (const v of [FIRST, SECOND]) assert.ok(!err.message.includes(v), 'no value in the reason');
        return true;
      });
      assert.deepEqual(calls, ['/keys/issue']);
    });
  }
});

test('a repeated key anywhere in the /issue answer is refused; a key that is not one of the protocol\'s is not quoted', async () => {
  const text = `{"id":"c1","value":"${FIRST}","meta":{"${SECOND}":1,"${SECOND}":2}}`;
  const { rotator } = rotatorAnswering({ '/keys/issue': { text } });
  await assert.rejects(rotator.generate(rc()), (err: Error) => {
    assert.match(err.message, /names a field twice/);
    for (const v of [FIRST, SECOND]) assert.ok(!err.message.includes(v), 'no value and no unknown key in the reason');
    return true;
  });
});

test('a well-formed /issue answer still gives the value, and a non-2xx one still says its status', async () => {
  const ok = rotatorAnswering({ '/keys/issue': { text: `{"id":"c1","value":"${FIRST}"}` } });
  assert.deepEqual(await ok.rotator.generate(rc()), { value: FIRST, state: { id: 'c1' } });
  const refused = rotatorAnswering({ '/keys/issue': { status: 503, text: `{"error":"busy","error":"down"}` } });
  await assert.rejects(refused.rotator.generate(rc()), /answered HTTP 503 without \{ id, value \}/);
});

test('the other endpoints\' answers are not read, so a repeated key in them changes nothing', async () => {
  const dup = '{"ok":false,"ok":true}';
  const { rotator } = rotatorAnswering({ '/keys/activate': { text: dup }, '/keys/test': { text: dup }, '/keys/revoke': { text: dup } });
  await rotator.apply(rc({ id: 'c1' }), FIRST);
  assert.deepEqual(await rotator.test(rc({ id: 'c1' }), FIRST), { ok: true, detail: 'the source answered HTTP 200' });
  assert.equal((await rotator.restore(rc({ id: 'c1' }), FIRST)).ok, true);
});
