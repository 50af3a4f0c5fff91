import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { createCli } from '../run.ts';
import { entries } from './index.ts';

/** The grants commands in-process against a real Keyhold app (fetch answered by fastify's inject). */

let h: Harness;
const urls: string[] = [];

before(async () => {
  h = await createHarness('sqlite');
});
after(() => h.close());

const injectFetch = (async (input: URL, init: RequestInit) => {
  urls.push(input.pathname + input.search);
  const res = await h.app.inject({
    method: (init.method ?? 'GET') as 'GET', url: input.pathname + input.search, headers: init.headers as Record<string, string>,
    ...(init.body !== undefined ? { payload: init.body as string } : {}),
  });
  return new Response(res.statusCode === 204 ? null : res.body, { status: res.statusCode });
}) as typeof fetch;

async function run(argv: string[]) {
  let stdout = '';
  let stderr = '';
  const cli = createCli({
    entries, fetch: injectFetch, stdin: Readable.from([]),
    stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) },
    env: { KEYHOLD_TOKEN: h.rootToken },
  });
  return { code: await cli.run(argv), stdout, stderr };
}

test('grants list shows revoked grants, with when they were revoked, only with --include-revoked', async () => {
  const ann = await userContext(h, h.ctx.tenantId, 'ann');
  const live = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ann.id, role: 'viewer' });
  const gone = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ann.id, role: 'builder' });
  assert.equal((await run(['grants', 'revoke', gone.id])).code, 0);

  const plain = await run(['grants', 'list', '--principal', ann.id]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, new RegExp(live.id));
  assert.doesNotMatch(plain.stdout, new RegExp(gone.id));
  assert.doesNotMatch(plain.stdout, /REVOKED/);

  const all = await run(['grants', 'list', '--principal', ann.id, '--include-revoked', '--json']);
  assert.equal(all.code, 0, all.stderr);
  const items = (JSON.parse(all.stdout) as { items: { id: string; revokedAt: string | null }[] }).items;
  assert.deepEqual(items.map((g) => [g.id, g.revokedAt === null]), [[live.id, true], [gone.id, false]]);
  assert.equal(urls.at(-1), `/v1/grants?principalId=${ann.id}&includeRevoked=true`);

  const table = await run(['grants', 'list', '--include-revoked']);
  assert.match(table.stdout, /REVOKED/);
  assert.match(table.stdout, new RegExp(`${gone.id}.*\\d{4}-\\d\\d-\\d\\dT`));
});
