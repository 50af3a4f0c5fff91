import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';

let h: Harness;
describe('the OpenAPI document', () => {
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  test('the OpenAPI document says which operations take no token: exactly those that answer without one', async () => {
    const doc = JSON.parse((await h.app.inject({ method: 'GET', url: '/v1/openapi.json' })).body) as {
      paths: Record<string, Record<string, { security?: Array<Record<string, string[]>> }>>;
    };
    const wrong: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(operations)) {
        // Without a token: refused before anything runs, or answered (bad input at most) by an operation that needs none.
        const res = await h.app.inject({
          method: method.toUpperCase() as 'GET', url: path.replace(/\{[^}]+\}/g, 'x'),
          ...(method === 'get' || method === 'delete' ? {} : { payload: { unknownField: true } }),
        });
        // The auth hook's refusal (auth.ts), not an operation's own (a webhook's token is part of its path).
        const needsToken = res.statusCode === 401 && /Authorization: Bearer/.test(res.body);
        // No requirement at all ([]) or an empty one among the alternatives ({}): a caller may come without credentials.
        const security = op.security ?? [{ bearer: [] }];
        const documentedAnonymous = security.length === 0 || security.some((s) => Object.keys(s).length === 0);
        if (needsToken === documentedAnonymous) wrong.push(`${method.toUpperCase()} ${path}: ${needsToken ? 'needs a token' : 'takes none'}, documented otherwise`);
      }
    }
    assert.deepEqual(wrong, []);
  });
});
