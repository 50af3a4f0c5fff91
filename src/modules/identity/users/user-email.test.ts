import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { auditTexts } from '../../../../test/helpers/canaries.ts';
import { runCli } from '../../../../test/helpers/cli.ts';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, newUser, PASSWORD, sessionFor } from '../../../../test/helpers/users.ts';

/** A user's e-mail address (where the SMTP channel mails them): personal data, so shown to admins but never audited or logged. */
describeEachDialect('users: an optional e-mail address', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  /** Every place an address must never be: each audit column and the server log. */
  async function tracesOf(address: string): Promise<string[]> {
    return [...(await auditTexts(h.storage)), { where: 'log', text: h.logs.text() }].filter((t) => t.text.includes(address)).map((t) => t.where);
  }

  test('an admin gives one at creation, sets and clears it; the view shows it; the audit says set or cleared, never which', async () => {
    const created = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username: 'mia', password: PASSWORD, email: 'mia@example.com' } });
    assert.equal(created.status, 201);
    assert.equal(created.body.email, 'mia@example.com');
    assert.equal((await call(h, 'GET', `/v1/users/${created.body.id}`, { token: h.rootToken })).body.email, 'mia@example.com');
    const changed = await call(h, 'POST', `/v1/users/${created.body.id}/email`, { token: h.rootToken, body: { email: 'mia.new@example.com' } });
    assert.deepEqual([changed.status, changed.body.email], [200, 'mia.new@example.com']);
    const cleared = await call(h, 'POST', `/v1/users/${created.body.id}/email`, { token: h.rootToken, body: { email: null } });
    assert.deepEqual([cleared.status, cleared.body.email], [200, null]);
    const listed = await call(h, 'GET', '/v1/users', { token: h.rootToken });
    assert.equal(listed.body.items.find((u: { id: string }) => u.id === created.body.id).email, null);

    const events = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.resource.id === created.body.id);
    assert.deepEqual(events.filter((e) => e.action === 'user.update').map((e) => e.context.email), ['set', 'cleared']);
    assert.equal(events.find((e) => e.action === 'user.create')!.context.email, 'set');
    for (const address of ['mia@example.com', 'mia.new@example.com']) assert.deepEqual(await tracesOf(address), [], address);
  });

  test('only a bare address is taken, and a refusal changes nothing', async () => {
    const user = await newUser(h, 'bare');
    await h.services.users.setEmail(h.ctx, user.id, 'kept@example.com');
    for (const email of ['Bare <bare@example.com>', 'a@b.com, c@d.com', 'no-at-sign', 'x@y\r\nBcc: z@w', '', `${'a'.repeat(250)}@example.com`]) {
      const res = await call(h, 'POST', `/v1/users/${user.id}/email`, { token: h.rootToken, body: { email } });
      assert.deepEqual([res.status, res.body.error.code], [400, 'VALIDATION_FAILED'], email);
      const made = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username: 'bare-new', password: PASSWORD, email } });
      assert.equal(made.status, 400, email);
    }
    assert.equal((await h.services.users.get(h.ctx, user.id)).email, 'kept@example.com');
    assert.equal(await h.storage.db.selectFrom('users').select('id').where('username', '=', 'bare-new').executeTakeFirst(), undefined);
    assert.deepEqual(await tracesOf('Bare <bare@example.com>'), []);
  });

  test('a non-admin cannot set one, and a user of another tenant is USER_NOT_FOUND', async () => {
    const user = await newUser(h, 'plain');
    const own = await call(h, 'POST', `/v1/users/${user.id}/email`, { token: await sessionFor(h, user.username), body: { email: 'me@example.com' } });
    assert.equal(own.body.error.code, 'FORBIDDEN');
    const other = await h.services.tenants.create('other-email');
    const stranger = await h.services.users.create(h.contextFor(other.id), { username: 'stranger', password: PASSWORD });
    const res = await call(h, 'POST', `/v1/users/${stranger.id}/email`, { token: h.rootToken, body: { email: 'hijack@example.com' } });
    assert.deepEqual([res.status, res.body.error.code], [404, 'USER_NOT_FOUND']);
    assert.equal((await h.services.users.get(h.contextFor(other.id), stranger.id)).email, null);
    assert.equal((await h.services.users.get(h.ctx, user.id)).email, null);
  });

  test('the CLI sets one at creation and changes or clears it', async () => {
    const keyhold = (argv: string[], stdin?: string) => runCli(h.app, argv, { token: h.rootToken, env: { KEYHOLD_ADDR: 'https://keyhold.test' }, ...(stdin ? { stdin } : {}) });
    const created = await keyhold(['users', 'create', 'noor', '--email', 'noor@example.com', '--json'], `${PASSWORD}\n`);
    assert.equal(created.code, 0, created.stderr);
    const id = (JSON.parse(created.stdout) as { id: string; email: string | null }).id;
    assert.equal((await h.services.users.get(h.ctx, id)).email, 'noor@example.com');
    const changed = await keyhold(['users', 'set-email', 'noor', 'noor.b@example.com']);
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal((await h.services.users.get(h.ctx, id)).email, 'noor.b@example.com');
    assert.match((await keyhold(['users', 'describe', id])).stdout, /^E-mail:\s+noor\.b@example\.com$/m);
    const cleared = await keyhold(['users', 'set-email', 'noor', '--clear']);
    assert.equal(cleared.code, 0, cleared.stderr);
    assert.equal((await h.services.users.get(h.ctx, id)).email, null);
    assert.equal((await keyhold(['users', 'set-email', 'noor'])).code, 2, 'an address or --clear is needed');
  });
});
