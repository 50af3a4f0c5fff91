import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { eventsOf, seed } from '../../../test/helpers/connectors.ts';

/** A webhook receiver on loopback: records each request and answers with the URL it was called on, as a failing upstream would. */
async function startHookReceiver() {
  const requests: Array<{ method: string; url: string; body: string }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString('utf8') });
      const self = `http://127.0.0.1:${(server.address() as { port: number }).port}${req.url}`;
      res.writeHead(200, { 'content-type': 'application/json', 'x-seen': req.url ?? '' });
      res.end(JSON.stringify({ ok: true, path: req.url, error: `could not reach ${self}`, echoed: new URL(self).pathname }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describeEachDialect('an http connector whose destination URL is a slot secret (incoming webhooks)', (dialect) => {
  let h: Harness;
  let hook: Awaited<ReturnType<typeof startHookReceiver>>;
  const token = `xwh${randomBytes(12).toString('hex')}`;
  const secretPath = () => `/services/T0AAAA/B0BBBB/${token}`;
  const hookUrl = () => `${hook.url}${secretPath()}`;
  const auth = () => ({ authorization: `Bearer ${h.rootToken}` });
  const inject = (method: 'GET' | 'POST' | 'PUT', url: string, payload?: unknown) =>
    h.app.inject({ method, url, headers: auth(), ...(payload === undefined ? {} : { payload: payload as object }) });
  const proxy = (connector: string, path = '', env = 'production') =>
    inject('POST', `/v1/proxy/${env}/${connector}`, { method: 'POST', path, body: { text: 'deployed' } });

  before(async () => {
    h = await createHarness(dialect);
    hook = await startHookReceiver();
    h.canaries.add('secret value', hookUrl());
    h.canaries.add('secret value', secretPath());
    h.canaries.add('secret value', token);
    await seed(h, h.ctx, 'SLACK_HOOK', { production: hookUrl() });
    const created = await inject('POST', '/v1/connectors/production', { name: 'slack', type: 'http', owner: 'ops', settings: { auth: { kind: 'none' } }, slots: { url: 'SLACK_HOOK' } });
    assert.equal(created.statusCode, 201, created.body);
  });
  after(async () => {
    await hook.close();
    await h.close();
  });

  test('a proxied call reaches the URL in the secret; the answer, the connector and its listings never show it', async () => {
    const res = await proxy('slack');
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(hook.requests.at(-1)!.url, secretPath());
    assert.equal(hook.requests.at(-1)!.body, '{"text":"deployed"}');
    const shown = [
      res.body,
      (await inject('GET', '/v1/connectors/production/slack')).body,
      (await inject('GET', '/v1/connectors')).body,
      (await inject('GET', '/v1/connectors/production')).body,
    ];
    for (const text of shown) assert.ok(!text.includes(token), text);
    assert.deepEqual((await inject('GET', '/v1/connectors/production/slack')).json().slots, { url: 'SLACK_HOOK' });
    const uses = (await eventsOf(h, 'secret.use')).filter((e) => e.resource_name === 'SLACK_HOOK');
    assert.ok(uses.some((e) => e.context.connector === 'slack' && e.context.slot === 'url'));
  });

  test('a path under the URL is allowed, a path that leaves it is refused without naming it', async () => {
    assert.equal((await proxy('slack', '/thread')).statusCode, 200);
    assert.equal(hook.requests.at(-1)!.url, `${secretPath()}/thread`);
    const refused = await proxy('slack', '/../../other');
    assert.equal(refused.json().error.code, 'DESTINATION_NOT_ALLOWED');
    assert.ok(!refused.body.includes(token) && !refused.body.includes('/services/'), refused.body);
  });

  test('the URL secret is held to the destination rules at every call: metadata, plain http elsewhere, a query, credentials', async () => {
    const cases: Array<[string, string, string, string]> = [
      ['META_HOOK', `https://169.254.169.254/latest/${token}`, 'DESTINATION_FORBIDDEN', 'slot_url_forbidden_host'],
      ['PLAIN_HOOK', `http://hooks.example.com/services/${token}`, 'DESTINATION_NOT_ALLOWED', 'slot_url_plain_http'],
      ['FRAGMENT_HOOK', `https://hooks.example.com/services?sig=${token}#x`, 'DESTINATION_NOT_ALLOWED', 'slot_url_not_destination'],
      ['QUOTE_HOOK', `https://hooks.example.com/services?sig=${token}'`, 'DESTINATION_NOT_ALLOWED', 'slot_url_not_destination'],
      ['ENCODED_HOOK', `https://hooks.example.com/services%2F${token}?a=b`, 'DESTINATION_NOT_ALLOWED', 'slot_url_not_destination'],
      ['USER_HOOK', `https://u:${token}@hooks.example.com/x`, 'DESTINATION_NOT_ALLOWED', 'slot_url_not_destination'],
    ];
    const sent = hook.requests.length;
    for (const [secret, url, code, reason] of cases) {
      await seed(h, h.ctx, secret, { production: url });
      const name = secret.toLowerCase().replace('_', '-');
      await h.services.connectors.create(h.ctx, 'production', { name, type: 'http', owner: 'ops', settings: { auth: { kind: 'none' } }, slots: { url: secret } });
      const res = await proxy(name);
      assert.equal(res.json().error.code, code, `${secret}: ${res.body}`);
      assert.match(res.json().error.message, /the URL in slot "url"/);
      assert.ok(!res.body.includes(token), res.body);
      const refusal = (await eventsOf(h, 'proxy.refused')).at(-1)!;
      assert.equal(refusal.resource_name, name);
      assert.equal(refusal.context.refusal, reason);
      const health = (await inject('POST', `/v1/connectors/production/${name}/test`, {})).json();
      assert.equal(health.ok, false);
      assert.equal(health.reason, code === 'DESTINATION_FORBIDDEN' ? 'forbidden_address' : 'destination_refused', JSON.stringify(health));
      assert.ok(!JSON.stringify(health).includes(token));
    }
    assert.equal(hook.requests.length, sent, 'nothing was sent');
  });

  test('the health check calls the URL in the secret, and a rotated URL is checked and used with no edit of the connector', async () => {
    const health = (await inject('POST', '/v1/connectors/production/slack/test', {})).json();
    assert.equal(health.ok, true, JSON.stringify(health));
    assert.equal(hook.requests.at(-1)!.method, 'GET');
    assert.equal(hook.requests.at(-1)!.url, secretPath());
    const next = `${hook.url}/services/T0AAAA/B0BBBB/${token}rotated`;
    assert.equal((await h.services.connectors.test(h.ctx, 'production', 'slack', { overrides: { url: next } })).ok, true);
    assert.equal(hook.requests.at(-1)!.url, new URL(next).pathname);
    await h.services.values.write(h.ctx, 'SLACK_HOOK', 'production', { value: next });
    assert.equal((await proxy('slack')).statusCode, 200);
    assert.equal(hook.requests.at(-1)!.url, new URL(next).pathname);
  });

  test('an automation using it exports and runs without the URL in the export, the run record or the audit trail', async () => {
    const machine = await inject('POST', '/v1/machines', { name: 'notifier', kind: 'client_secret' });
    assert.equal(machine.statusCode, 201, machine.body);
    const grant = await inject('POST', '/v1/grants', { principalType: 'machine', principalId: machine.json().id, role: 'builder', environments: ['production'] });
    assert.ok(grant.statusCode < 300, grant.body);
    const saved = await inject('POST', '/v1/automations', {
      name: 'announce', runAs: 'notifier', environments: ['production'], trigger: { type: 'manual' },
      steps: [{ id: 'post', type: 'http', connector: '{{ connectors.slack }}', method: 'POST', path: '/', body: { text: 'hi' } }],
    });
    assert.ok(saved.statusCode < 300, saved.body);
    const exported = await inject('GET', '/v1/automations/export?environment=production');
    assert.equal(exported.statusCode, 200, exported.body);
    assert.ok(exported.body.includes('SLACK_HOOK') && !exported.body.includes(token));
    const run = await inject('POST', '/v1/automations/announce/runs', { environment: 'production' });
    assert.equal(run.json().status, 'succeeded', run.body);
    const record = (await inject('GET', `/v1/runs/${run.json().id}`)).body;
    assert.ok(record.includes('could not reach') && !record.includes(token), record);
  });

  test('a webhook URL with a signed query (Teams Workflows) is called with its query exactly as written, which callers cannot override', async () => {
    const sig = `${randomBytes(24).toString('base64url')}%3D`;
    h.canaries.add('secret value', sig);
    h.canaries.add('secret value', decodeURIComponent(sig));
    const path = `/workflows/${randomBytes(8).toString('hex')}/triggers/manual/paths/invoke`;
    const query = `api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=${sig}`;
    await seed(h, h.ctx, 'TEAMS_HOOK', { production: `${hook.url}${path}?${query}` });
    await h.services.connectors.create(h.ctx, 'production', { name: 'teams', type: 'http', owner: 'ops', settings: { auth: { kind: 'none' } }, slots: { url: 'TEAMS_HOOK' } });

    const sent = await proxy('teams');
    assert.equal(sent.statusCode, 200, sent.body);
    assert.equal(hook.requests.at(-1)!.url, `${path}?${query}`, 'the signed query arrives byte for byte');
    for (const text of [sent.body, JSON.stringify(sent.json())]) assert.ok(!text.includes(sig) && !text.includes(decodeURIComponent(sig)), text);

    const withOwn = await inject('POST', '/v1/proxy/production/teams', { method: 'POST', path: '/sub', query: { trace: 'a b~' }, body: {} });
    assert.equal(withOwn.statusCode, 200, withOwn.body);
    assert.equal(hook.requests.at(-1)!.url, `${path}/sub?${query}&trace=a+b%7E`, "the caller's parameters come after the URL's, which stay as written");

    const before = hook.requests.length;
    for (const name of ['sig', 'api-version']) {
      const override = await inject('POST', '/v1/proxy/production/teams', { method: 'POST', path: '', query: { [name]: 'forged' }, body: {} });
      assert.equal(override.json().error.code, 'PROXY_HEADER_NOT_ALLOWED', override.body);
      assert.ok(!override.body.includes(sig), override.body);
      assert.equal((await eventsOf(h, 'proxy.refused')).at(-1)!.context.refusal, 'auth_override');
    }
    assert.equal(hook.requests.length, before, 'nothing was sent for an override');

    const health = (await inject('POST', '/v1/connectors/production/teams/test', {})).json();
    assert.equal(health.ok, true, JSON.stringify(health));
    assert.equal(hook.requests.at(-1)!.url, `${path}?${query}`);
  });

  test('auth "none" needs the URL slot, and a connector without baseUrl needs the slot', async () => {
    const create = (settings: Record<string, unknown>, slots: Record<string, string>) =>
      h.services.connectors.create(h.ctx, 'production', { name: `c${randomBytes(3).toString('hex')}`, type: 'http', owner: 'ops', settings, slots }).then(() => 'ok', (e: { code?: string }) => e.code);
    assert.equal(await create({ baseUrl: 'https://hooks.example.com', auth: { kind: 'none' } }, {}), 'VALIDATION_FAILED');
    assert.equal(await create({ auth: { kind: 'none' } }, {}), 'SLOT_UNRESOLVED');
    assert.equal(await create({ auth: { kind: 'bearer' } }, { token: 'SLACK_HOOK' }), 'SLOT_UNRESOLVED');
    assert.equal(await create({ auth: { kind: 'bearer' } }, { token: 'SLACK_HOOK', url: 'SLACK_HOOK' }), 'ok');
  });
});
