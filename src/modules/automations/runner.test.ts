import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runAsLock, unrevokedTokens } from '../../../test/helpers/identities.ts';
import { backendPid, waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import { createRedactor } from '../redaction/redactor.ts';
import type { TenantContext } from '../shared/context.ts';
import { createAutomationService } from './automation-service.ts';
import { createRunner, type ProxyPort, type ScriptPort } from './runner.ts';
import { createRunQueries } from './runs.ts';
import type { AutomationDefinition } from './types.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

/**
 * The runner against fake proxy and script ports: what it hands them, as whom, in which
 * environment, and what it stores. The real proxy and sandbox have their own suites, and the
 * end-to-end suite runs all of them together.
 */

describeEachDialect('the automation runner', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  const calls: Array<{ ctx: TenantContext; input: Parameters<ProxyPort['call']>[1] }> = [];
  const scriptCalls: Array<Parameters<ScriptPort['run']>[0]> = [];
  let upstream: (input: Parameters<ProxyPort['call']>[1]) => ReturnType<ProxyPort['call']> | Awaited<ReturnType<ProxyPort['call']>>;
  const VALUE = 'sk_test_runner_canary_value_42';
  let runner: ReturnType<typeof createRunner>;
  let automations: ReturnType<typeof createAutomationService>;

  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
    await h.services.machines.create(ctx, { name: 'runner-bot', kind: 'client_secret' });
    await h.services.secrets.create(ctx, { name: 'API_KEY', owner: 'team' });
    await h.services.values.write(ctx, 'API_KEY', 'staging', { value: VALUE });
    automations = createAutomationService({
      db: h.storage.db, authz: h.services.authz, secrets: h.services.secrets, audit: h.services.audit, clock: h.clock,
      connectors: { list: async () => [{ name: 'api', environment: 'staging', type: 'http', slots: { token: 'API_KEY' }, personal: false }] },
      detectCredentials: () => [],
    });
    runner = createRunner({
      db: h.storage.db, automations, tenants: h.services.tenants, tokens: h.services.tokens, audit: h.services.audit, clock: h.clock,
      machines: runAsLock(h),
      proxy: { call: async (c, input) => { calls.push({ ctx: c, input }); return upstream(input); } },
      scripts: { run: async (opts) => { scriptCalls.push(opts); return { ok: true, output: { seen: opts.env.KEYHOLD_ENVIRONMENT }, stdout: `printed ${VALUE}`, stderr: '', timedOut: false }; } },
      redactors: { forTenant: async () => createRedactor([VALUE]) },
      keyholdAddress: () => 'http://127.0.0.1:1',
    });
    upstream = (input) => ({ status: 200, headers: {}, body: { id: `ch_${input.run.step}`, echo: VALUE }, truncated: false });
  });
  after(async () => {
    await runner.drain();
    await h.close();
  });

  const def = (over: Partial<AutomationDefinition> = {}): AutomationDefinition => ({
    name: 'flow', runAs: 'runner-bot', environments: ['staging'], trigger: { type: 'manual' },
    steps: [
      { id: 'first', type: 'http', connector: '{{ connectors.api }}', method: 'POST', path: '/charges', headers: { Authorization: 'Bearer {{ secrets.API_KEY }}' }, body: { amount: '{{ input.amount }}' } },
      { id: 'second', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/receipts/{{ steps.first.output.body.id }}' },
      { id: 'third', type: 'script', source: 'export default async (input) => input' },
    ],
    ...over,
  });

  test('a run acts as the automation machine identity, in the run environment, and passes data between steps', async () => {
    await automations.create(ctx, def());
    const run = await runner.start(ctx, 'flow', { environment: 'staging', input: { amount: 1200 }, trigger: 'manual', wait: true });
    assert.equal(run.status, 'succeeded', JSON.stringify(run));
    const [first, second] = calls.slice(-2);
    assert.equal(first!.ctx.actor.type, 'machine');
    assert.equal(first!.ctx.actor.name, 'runner-bot');
    assert.equal(first!.input.environment, 'staging');
    assert.deepEqual(first!.input.request.body, { amount: 1200 }, 'a whole-string reference keeps its JSON type');
    assert.equal(first!.input.request.headers!.Authorization, 'Bearer {{ secrets.API_KEY }}', 'secret references are left for the proxy');
    assert.equal(second!.input.request.path, '/receipts/ch_first');
    assert.deepEqual(first!.input.run, { runId: run.id, automation: 'flow', step: 'first' });
    assert.equal(scriptCalls.at(-1)!.env.KEYHOLD_ENVIRONMENT, 'staging');
  });

  test('stored outputs and logs are redacted, and the run token stops working when the run ends', async () => {
    const queries = createRunQueries({ db: h.storage.db, authz: h.services.authz });
    const run = await queries.get(ctx, (await queries.list(ctx, { automation: 'flow' }))[0]!.id);
    const stored = JSON.stringify(await h.storage.db.selectFrom('automation_runs').selectAll().execute());
    assert.ok(!stored.includes(VALUE), 'no value in any stored run');
    assert.equal((run.steps[0]!.output as { body: { echo: string } }).body.echo, '[REDACTED]');
    assert.match(run.steps[2]!.log, /printed \[REDACTED\]/);
    const token = scriptCalls.at(-1)!.env.KEYHOLD_TOKEN;
    assert.equal(await h.services.tokens.authenticate(token), null, 'the run token was revoked');
  });

  test('upstream data containing a template is never spliced into the next request', async () => {
    upstream = (input) => ({ status: 200, headers: {}, body: { id: input.run.step === 'first' ? '{{ secrets.API_KEY }}' : 'x' }, truncated: false });
    const before = calls.length;
    const run = await runner.start(ctx, 'flow', { environment: 'staging', input: { amount: 1 }, trigger: 'manual', wait: true });
    assert.equal(run.status, 'failed');
    assert.match(run.steps[1]!.error!, /^TEMPLATE_INJECTION/);
    assert.equal(run.steps[2]!.status, 'skipped');
    assert.equal(calls.length - before, 1, 'the second request was never made');
    upstream = (input) => ({ status: 200, headers: {}, body: { id: `ch_${input.run.step}` }, truncated: false });
  });

  test('data that only forms a template next to other data or text is never spliced either', async () => {
    // Each piece alone holds no "{{", but spliced into its place it completes {{ secrets.API_KEY }}.
    const cases: Array<[string, Record<string, string>]> = [
      ['{{ input.a }}{{ input.b }}', { a: 'x{', b: '{ secrets.API_KEY }}' }],
      ['{{ input.a }}{ secrets.API_KEY }}', { a: '{' }],
      ['note {{ {{ input.a }}', { a: 'secrets.API_KEY }}' }],
    ];
    for (const [i, [note, input]] of cases.entries()) {
      await automations.create(ctx, def({ name: `spliced-${i}`, steps: [{ id: 'only', type: 'http', connector: '{{ connectors.api }}', method: 'POST', path: '/notes', headers: { 'X-Note': note } }] }));
      const before = calls.length;
      const run = await runner.start(ctx, `spliced-${i}`, { environment: 'staging', input, trigger: 'manual', wait: true });
      assert.equal(run.status, 'failed', note);
      assert.match(run.steps[0]!.error!, /^TEMPLATE_INJECTION/, note);
      assert.equal(calls.length, before, `${note}: nothing reached the proxy`);
    }
  });

  test('a failing upstream fails the step and skips the rest, unless the step continues on error', async () => {
    upstream = () => ({ status: 502, headers: {}, body: 'bad gateway', truncated: false });
    const run = await runner.start(ctx, 'flow', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    assert.equal(run.status, 'failed');
    assert.deepEqual(run.steps.map((s) => s.status), ['failed', 'skipped', 'skipped']);
    assert.match(run.error!, /step "first" failed: UPSTREAM_STATUS/);
    const [first, ...rest] = def().steps;
    await automations.create(ctx, def({ name: 'tolerant', steps: [{ ...first!, continueOnError: true }, ...rest.slice(1)] }));
    const tolerant = await runner.start(ctx, 'tolerant', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    assert.deepEqual(tolerant.steps.map((s) => s.status), ['failed', 'succeeded']);
    assert.equal(tolerant.status, 'succeeded');
    upstream = (input) => ({ status: 200, headers: {}, body: { id: `ch_${input.run.step}` }, truncated: false });
  });

  test('a run outside the automation environments is refused before anything runs', async () => {
    await h.services.tenants.createEnvironment(ctx, 'qa');
    assert.equal(await codeOf(runner.start(ctx, 'flow', { environment: 'qa', trigger: 'manual', wait: true })), 'ENVIRONMENT_NOT_ALLOWED');
    assert.equal(await codeOf(runner.start(ctx, 'flow', { environment: 'nowhere', trigger: 'manual', wait: true })), 'ENVIRONMENT_NOT_FOUND');
  });

  test('a disabled run identity fails the run clearly and issues no token', async () => {
    const bot = await h.services.machines.create(ctx, { name: 'short-lived-bot', kind: 'client_secret' });
    await automations.create(ctx, def({ name: 'orphan', runAs: 'short-lived-bot' }));
    await h.services.machines.disable(ctx, bot.id);
    const run = await runner.start(ctx, 'orphan', { environment: 'staging', trigger: 'manual', wait: true });
    assert.equal(run.status, 'failed');
    assert.match(run.error!, /^MACHINE_DISABLED/);
  });

  test('disabling the run identity mid-run stops the run before its next step', async () => {
    const bot = await h.services.machines.create(ctx, { name: 'mid-run-bot', kind: 'client_secret' });
    await automations.create(ctx, def({ name: 'interrupted', runAs: 'mid-run-bot' }));
    const before = calls.length;
    const scriptsBefore = scriptCalls.length;
    // The first step's answer comes back only after the disable has committed.
    upstream = async () => {
      await h.services.machines.disable(ctx, bot.id);
      return { status: 200, headers: {}, body: { id: 'ch_1' }, truncated: false };
    };
    const run = await runner.start(ctx, 'interrupted', { environment: 'staging', trigger: 'manual', wait: true });
    assert.equal(run.status, 'failed');
    assert.equal(calls.length - before, 1, 'no request was made after the disable');
    assert.equal(scriptCalls.length, scriptsBefore, 'no script ran with the dead token');
    assert.match(run.steps[1]!.error!, /^MACHINE_DISABLED/);
    assert.equal(run.steps[2]!.status, 'skipped');
    upstream = (input) => ({ status: 200, headers: {}, body: { id: `ch_${input.run.step}` }, truncated: false });
  });

  test('an admin revoking the run token mid-run stops the run too', async () => {
    await automations.create(ctx, def({ name: 'revoked-mid-run' }));
    const before = calls.length;
    upstream = async () => {
      await h.services.tokens.revoke(calls.at(-1)!.ctx.actor.credentialId!, ctx.tenantId);
      return { status: 200, headers: {}, body: { id: 'ch_1' }, truncated: false };
    };
    const run = await runner.start(ctx, 'revoked-mid-run', { environment: 'staging', trigger: 'manual', wait: true });
    assert.equal(run.status, 'failed');
    assert.equal(calls.length - before, 1);
    assert.match(run.steps[1]!.error!, /^MACHINE_DISABLED/);
    upstream = (input) => ({ status: 200, headers: {}, body: { id: `ch_${input.run.step}` }, truncated: false });
  });

  test('a disable racing the start of a run leaves no live token for the disabled identity', { skip: dialect !== 'postgres' && 'SQLite runs one transaction at a time' }, async () => {
    const bot = await h.services.machines.create(ctx, { name: 'racing-bot', kind: 'client_secret' });
    await automations.create(ctx, def({ name: 'raced', runAs: 'racing-bot' }));
    let started: Promise<unknown> = Promise.resolve();
    // A disable in flight: the identity's row is locked, the run reads it (still live) meanwhile.
    await h.storage.db.transaction().execute(async (trx) => {
      await trx.selectFrom('machine_identities').select('id').where('id', '=', bot.id).forUpdate().execute();
      started = runner.start(ctx, 'raced', { environment: 'staging', trigger: 'manual', wait: true });
      // The run has read the identity (live) and waits for its lock behind this disable.
      await waitUntilBlockedBy(h.storage.db, [await backendPid(trx)]);
      await trx.updateTable('machine_identities').set({ disabled_at: h.clock.now() }).where('id', '=', bot.id).execute();
      await h.services.tokens.revokeAllFor(bot.id, trx);
    });
    const run = await started as { status: string; error: string | null };
    assert.equal(run.status, 'failed');
    assert.match(run.error!, /^MACHINE_DISABLED/);
    assert.deepEqual(await unrevokedTokens(h, bot.id), [], 'no token outlived the disable');
  });

  test('a value written while the run is under way (a rotation mid-run) is masked in what the run stores', async () => {
    // The tenant's real redactor this time: it must know values that did not exist when the run started.
    const rotated = `sk_test_rotated_mid_run_${Date.now()}`;
    const live = createRunner({
      db: h.storage.db, automations, tenants: h.services.tenants, tokens: h.services.tokens, audit: h.services.audit, clock: h.clock,
      machines: runAsLock(h), redactors: h.services.redactors, keyholdAddress: () => 'http://127.0.0.1:1',
      proxy: { call: async () => ({ status: 200, headers: {}, body: { echo: rotated }, truncated: false }) },
      scripts: {
        run: async () => {
          await h.services.values.write(ctx, 'API_KEY', 'staging', { value: rotated });
          return { ok: true, output: { read: rotated }, stdout: `read ${rotated}`, stderr: '', timedOut: false };
        },
      },
    });
    await automations.create(ctx, def({ name: 'rotated-mid-run', steps: [def().steps[2]!, { ...def().steps[0]!, id: 'after' }] }));
    const run = await live.start(ctx, 'rotated-mid-run', { environment: 'staging', input: { amount: 1 }, trigger: 'manual', wait: true });
    await live.drain();
    assert.equal(run.status, 'succeeded', JSON.stringify(run));
    const stored = JSON.stringify(await h.storage.db.selectFrom('automation_runs').selectAll().where('id', '=', run.id).execute());
    assert.ok(!stored.includes(rotated), `the new value is stored in the clear: ${stored.slice(0, 400)}`);
    assert.match(stored, /read \[REDACTED\]/);
  });

  test('a drain waits for the runs under way and refuses new ones, so a stream of triggers cannot hold a stop open', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const draining = createRunner({
      db: h.storage.db, automations, tenants: h.services.tenants, tokens: h.services.tokens, audit: h.services.audit, clock: h.clock,
      machines: runAsLock(h), redactors: { forTenant: async () => createRedactor([VALUE]) }, keyholdAddress: () => 'http://127.0.0.1:1',
      proxy: { call: async () => { await held; return { status: 200, headers: {}, body: {}, truncated: false }; } },
      scripts: { run: async () => ({ ok: true, output: {}, stdout: '', stderr: '', timedOut: false }) },
    });
    await automations.create(ctx, def({ name: 'held', steps: [def().steps[0]!], trigger: { type: 'webhook', environment: 'staging' } }));
    const first = await draining.start(ctx, 'held', { environment: 'staging', trigger: 'webhook', wait: false });
    let drained = false;
    const drain = draining.drain().then(() => (drained = true));
    // A trigger arriving during the stop (the node still answers HTTP while its runs finish) starts nothing.
    await assert.rejects(draining.start(ctx, 'held', { environment: 'staging', trigger: 'webhook', wait: false }), (err: { code?: string }) => err.code === 'SHUTTING_DOWN');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(drained, false, 'the drain did not wait for the run under way');
    release();
    await drain;
    const stored = await h.storage.db.selectFrom('automation_runs').select(['id', 'status']).where('automation_name', '=', 'held').execute();
    assert.deepEqual(stored.map((r) => [r.id, r.status]), [[first.id, 'succeeded']]);
  });

  test('runs start and finish as audit events carrying the run id', async () => {
    const rows = await h.storage.db.selectFrom('audit_events').select(['action', 'context', 'outcome']).where('action', 'like', 'automation.run.%').execute();
    assert.ok(rows.some((r) => r.action === 'automation.run.start'));
    assert.ok(rows.some((r) => r.action === 'automation.run.finish' && r.outcome === 'failed'));
    assert.ok(rows.every((r) => typeof (JSON.parse(r.context) as { runId?: string }).runId === 'string'));
  });
});
