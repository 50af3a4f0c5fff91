import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakePaymentApi, type FakePaymentApi } from '../fixtures/fake-payment-api.ts';
import { startServer, type ServerProcess } from '../helpers/server-process.ts';

/**
 * Issue 5's scenario on loopback, against a real server process: an automation charges a fake
 * payment API through a connector; the key is rotated; the next run succeeds with no edit; the run
 * log, step outputs, the export and the server's own log hold no form of either key.
 */
const FIRST = 'sk_test_e2e_first_9fK2xQ7mZ1';
const SECOND = 'sk_test_e2e_second_4Lp8vW3nR6';
const forms = (v: string) => [v, Buffer.from(v).toString('base64'), Buffer.from(v).toString('hex'), encodeURIComponent(v), JSON.stringify(v).slice(1, -1)];

let server: ServerProcess;
let api: FakePaymentApi;
let other: FakePaymentApi;
let dataDir: string;

const definition = (over: Record<string, unknown> = {}) => ({
  name: 'charge-customer', runAs: 'checkout-runner', environments: ['staging', 'production'], trigger: { type: 'manual' },
  steps: [
    { id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', body: { amount: '{{ input.amount }}' } },
    {
      id: 'audit-note', type: 'script',
      source: "export default async function (input, { secrets }) { const key = await secrets.get('PAYMENT_API_KEY'); console.log('using key', key); return { charged: input.steps.charge.output.body.id }; }",
    },
  ],
  ...over,
});

describe('the runtime walkthrough end to end', () => {
  before(async () => {
    api = await startFakePaymentApi({ token: FIRST });
    other = await startFakePaymentApi({ token: FIRST });
    dataDir = await mkdtemp(join(tmpdir(), 'keyhold-runtime-e2e-'));
    server = await startServer({ dataDir, logLevel: 'debug' });
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await server.request(method, path, body === undefined ? {} : { body });
      assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
      return r.json;
    };
    await call('POST', '/v1/secrets', { name: 'PAYMENT_API_KEY', owner: 'payments-team', classification: 'restricted' });
    await call('PUT', '/v1/secrets/PAYMENT_API_KEY/values/production', { value: FIRST });
    const machine = await call('POST', '/v1/machines', { name: 'checkout-runner', kind: 'client_secret' });
    await call('POST', '/v1/grants', { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production', 'staging'] });
    for (const env of ['production', 'staging']) {
      await call('POST', `/v1/connectors/${env}`, { name: 'payments', type: 'http', owner: 'payments-team', settings: { baseUrl: api.url, auth: { kind: 'bearer' }, healthPath: '/health' }, slots: { token: 'PAYMENT_API_KEY' } });
    }
    await call('POST', '/v1/automations', definition());
  });

  after(async () => {
    await server?.stop();
    await api?.close();
    await other?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const run = async (environment: string, amount = 1200) => (await server.request('POST', '/v1/automations/charge-customer/runs', { body: { environment, input: { amount } } })).json;

  test('a production run charges through the connector; the script reads the key through the SDK and its printout is masked', async () => {
    const r = await run('production');
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(r.steps[0].output.status, 201);
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${FIRST}`);
    assert.match(r.steps[1].log, /using key \[REDACTED\]/);
    assert.deepEqual(r.steps[1].output, { charged: r.steps[0].output.body.id });
    // Every use by the run carries it: the proxy's with the run id and step, the script's SDK read with the run's token.
    const events = (await server.request('GET', '/v1/audit/tail?limit=1000')).json.items as Array<{ action: string; context: Record<string, string> }>;
    const start = events.find((e) => e.action === 'automation.run.start' && e.context.runId === r.id)!;
    const uses = events.filter((e) => e.action === 'secret.use');
    assert.ok(uses.some((e) => e.context.runId === r.id && e.context.step === 'charge'), 'the proxied use names the run and step');
    assert.ok(uses.some((e) => e.context.credentialId === start.context.runTokenId && e.context.userAgent?.startsWith('keyhold-sdk')), 'the SDK read is tied to the run token');
  });

  test('after the key is rotated at the provider and in Keyhold, the next run succeeds with no edit', async () => {
    api.setToken(SECOND);
    assert.equal((await run('production')).status, 'failed', 'the old key no longer works at the provider');
    const w = await server.request('PUT', '/v1/secrets/PAYMENT_API_KEY/values/production', { body: { value: SECOND, cas: 1 } });
    assert.equal(w.status, 200, w.text);
    const r = await run('production');
    assert.equal(r.status, 'succeeded', JSON.stringify(r));
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${SECOND}`);
  });

  test('a staging run never resolves the production key: it fails clearly', async () => {
    const before = api.requests.length;
    const r = await run('staging');
    assert.equal(r.status, 'failed');
    assert.match(r.steps[0].error, /VALUE_NOT_SET/);
    assert.equal(api.requests.length, before, 'nothing was sent');
  });

  test('pointing a step at another host is refused at run time and audited; the other server sees nothing', async () => {
    const current = (await server.request('GET', '/v1/automations/charge-customer')).json;
    const evil = definition({ steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'GET', path: `//127.0.0.1:${other.port}/steal` }] });
    const saved = await server.request('PUT', '/v1/automations/charge-customer', { body: { definition: evil, revision: current.revision } });
    assert.equal(saved.status, 200, saved.text);
    const r = await run('production');
    assert.equal(r.status, 'failed');
    assert.match(r.steps[0].error, /DESTINATION_NOT_ALLOWED/);
    assert.equal(other.requests.length, 0);
    const refused = (await server.request('GET', '/v1/audit/events?action=proxy.refused')).json;
    assert.ok(JSON.stringify(refused).includes('proxy.refused'), JSON.stringify(refused).slice(0, 300));
    await server.request('PUT', '/v1/automations/charge-customer', { body: { definition: definition(), revision: current.revision + 1 } });
  });

  test('a definition pasted with a real-looking API key is refused at save', async () => {
    const pasted = definition({ name: 'pasted', steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', headers: { 'X-Api-Key': 'sk_live_51HxQ2eLkq8Zt0p9rT3yV6wB' } }] });
    const r = await server.request('POST', '/v1/automations', { body: pasted });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'LITERAL_CREDENTIAL');
    assert.ok(!r.text.includes('sk_live_51HxQ2eLkq8Zt0p9rT3yV6wB'));
  });

  test('the export, every stored run, the audit trail and the server log hold no form of either key', async () => {
    const exported = (await server.request('GET', '/v1/automations/export?environment=production')).text;
    // The list answers summaries (no outputs or logs): every run is read in full too, where upstream answers are kept.
    const listed = await server.request('GET', '/v1/runs?limit=100');
    const ids = (listed.json.items as Array<{ id: string }>).map((r) => r.id);
    assert.ok(ids.length > 0, 'the scenario stored runs');
    const shown: string[] = [];
    for (const id of ids) shown.push((await server.request('GET', `/v1/runs/${id}`)).text);
    assert.ok(shown.some((t) => t.includes('"output"')), 'the full runs hold step outputs');
    const runs = [listed.text, ...shown].join('\n');
    const audit = (await server.request('GET', '/v1/audit/events?limit=1000')).text;
    assert.ok(exported.includes('PAYMENT_API_KEY') && exported.includes('"connectors"'));
    for (const v of [FIRST, SECOND]) {
      for (const f of forms(v)) {
        for (const [what, text] of [['export', exported], ['runs', runs], ['audit', audit], ['server log', server.logs()]] as const) {
          assert.ok(!text.includes(f), `${what} holds a form of a key: ${f} ~ ${text.slice(Math.max(0, text.indexOf(f) - 200), text.indexOf(f) + 60)}`);
        }
      }
    }
  });
});
