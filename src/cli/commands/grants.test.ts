import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { runCli } from '../../../test/helpers/cli.ts';

/** The grants commands in-process against a real Keyhold app (fetch answered by fastify's inject). */

let h: Harness;
const urls: string[] = [];

describe('keyhold grants', () => {
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  const run = (argv: string[]) => runCli(h.app, argv, { token: h.rootToken, onAnswered: (sent) => urls.push(sent.url) });

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

  test('grants list hides expired grants unless --include-expired, which shows each grant\'s state', async () => {
    const bo = await userContext(h, h.ctx.tenantId, 'bo');
    const lasting = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: bo.id, role: 'viewer' });
    const brief = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: bo.id, role: 'builder', expiresAt: new Date(h.clock.now() + 60_000).toISOString() });
    const before = await run(['grants', 'list', '--principal', bo.id]);
    assert.match(before.stdout, new RegExp(brief.id), 'listed while it still counts');
    h.clock.advance(60_000);

    const plain = await run(['grants', 'list', '--principal', bo.id]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, new RegExp(lasting.id));
    assert.doesNotMatch(plain.stdout, new RegExp(brief.id));

    const all = await run(['grants', 'list', '--principal', bo.id, '--include-expired']);
    assert.equal(all.code, 0, all.stderr);
    assert.equal(urls.at(-1), `/v1/grants?principalId=${bo.id}&includeExpired=true`);
    assert.match(all.stdout, /STATE/);
    assert.match(all.stdout, new RegExp(`${brief.id}.*\\d{4}-\\d\\d-\\d\\dT\\S+\\s+expired`));
    assert.match(all.stdout, new RegExp(`${lasting.id}.*live`));
  });
});
