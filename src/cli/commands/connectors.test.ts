import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { seed } from '../../../test/helpers/connectors.ts';
import { runCli } from '../../../test/helpers/cli.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../../../test/fixtures/fake-payment-api.ts';
import { applySet } from './connectors.ts';

/** The connectors commands in-process against a real Keyhold app, and a real fixture API for `test`. */

let h: Harness;
let api: FakePaymentApi;
let dir: string;
const token = 'sk_live_cli_0123456789abcdef';

describe('keyhold connectors', () => {
  before(async () => {
    h = await createHarness('sqlite');
    api = await startFakePaymentApi({ token });
    dir = mkdtempSync(join(tmpdir(), 'keyhold-cli-conn-'));
    await seed(h, h.ctx, 'PAY_TOKEN', { production: token });
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await api.close();
    await h.close();
  });

  const run = (argv: string[]) => runCli(h.app, argv, { token: h.rootToken });

  test('--set builds nested settings and parses numbers, booleans and JSON', () => {
    const s: Record<string, unknown> = {};
    for (const a of ['baseUrl=http://x/v1', 'auth.kind=header', 'auth.header=X-Key', 'timeoutMs=500', 'destinations={"up":"http://y"}']) applySet(s, a);
    assert.deepEqual(s, { baseUrl: 'http://x/v1', auth: { kind: 'header', header: 'X-Key' }, timeoutMs: 500, destinations: { up: 'http://y' } });
    assert.throws(() => applySet(s, 'noequals'), /KEY=VALUE/);
    assert.throws(() => applySet(s, '__proto__.polluted=1'), /bad key/);
  });

  test('create with --set/--slot, list, show, test, update and delete a connector', async () => {
    const created = await run(['connectors', 'create', 'payments', '--env', 'production', '--type', 'http', '--owner', 'payments-team',
      '--set', `baseUrl=${api.url}`, '--set', 'healthPath=/health', '--set', 'auth.kind=bearer', '--slot', 'token=PAY_TOKEN']);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /Created http connector payments in production/);
    assert.match((await run(['connectors', 'list'])).stdout, /production\s+payments\s+http\s+payments-team\s+token=PAY_TOKEN/);
    const shown = await run(['connectors', 'show', 'payments', '--env', 'production', '--json']);
    assert.equal(JSON.parse(shown.stdout).slots.token, 'PAY_TOKEN');
    assert.ok(!shown.stdout.includes(token), 'show never prints a value');
    const ok = await run(['connectors', 'test', 'payments', '--env', 'production']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^OK payments: the health path answered 200/);
    const broken = await run(['connectors', 'update', 'payments', '--env', 'production', '--set', 'healthPath=/nope']);
    assert.equal(broken.code, 0, broken.stderr);
    assert.match(broken.stdout, /revision 2/);
    const failed = await run(['connectors', 'test', 'payments', '--env', 'production']);
    assert.equal(failed.code, 1, 'a failing health check exits 1');
    assert.match(failed.stdout, /FAILED payments: .*404/);
    assert.match((await run(['connectors', 'uses', 'PAY_TOKEN'])).stdout, /production\s+payments\s+token/);
    assert.equal((await run(['connectors', 'delete', 'payments', '--env', 'production'])).code, 0);
    assert.match((await run(['connectors', 'list', '--env', 'production'])).stdout, /No connectors/);
  });

  test('create from --file, and clear errors for bad input', async () => {
    const file = join(dir, 'connector.json');
    writeFileSync(file, JSON.stringify({ type: 'webhook-signer', owner: 'ops', settings: { url: `${api.url}/hooks` }, slots: { signingSecret: 'PAY_TOKEN' } }));
    const created = await run(['connectors', 'create', 'hooks', '--env', 'production', '--file', file]);
    assert.equal(created.code, 0, created.stderr);
    const missing = await run(['connectors', 'create', 'x', '--env', 'production', '--type', 'http', '--owner', 'o', '--set', 'baseUrl=http://127.0.0.1:1', '--set', 'auth.kind=bearer', '--slot', 'token=NOPE']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /SLOT_UNRESOLVED/);
    assert.match(missing.stderr, /slot "token": secret "NOPE" does not exist/);
    const usage = await run(['connectors', 'create', 'x', '--env', 'production', '--owner', 'o']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--type is required/);
    writeFileSync(file, JSON.stringify({ type: 'http', value: 'sk_live_oops' }));
    assert.match((await run(['connectors', 'create', 'y', '--env', 'production', '--file', file])).stderr, /unknown field\(s\) value/);
  });
});
