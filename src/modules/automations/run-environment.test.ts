import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runAsLock, userContext } from '../../../test/helpers/identities.ts';
import { createRedactor } from '../redaction/redactor.ts';
import type { TenantContext } from '../shared/context.ts';
import { createAutomationService } from './automation-service.ts';
import { createRunner, type ProxyPort } from './runner.ts';
import { createRunQueries } from './runs.ts';
import { createInventory } from './inventory.ts';
import type { AutomationDefinition } from './types.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

/**
 * SPEC §1: an automation running in staging never resolves a production value, whatever it
 * references. A run's token is bound to the run's environment, and an author cannot borrow the
 * rights of a more capable run identity (review finding: a staging builder's script read
 * production through a production-capable `runAs`).
 */

interface Probe { name: string; method: 'GET' | 'PUT' | 'POST'; url: string; body?: unknown }
type Seen = Record<string, { status: number; body: any }>;

/** What a script with its KEYHOLD_TOKEN tries, each one a real request to the HTTP API. */
const probes: Probe[] = [
  { name: 'read staging', method: 'GET', url: '/v1/secrets/DB_PASSWORD/values/staging' },
  { name: 'read production', method: 'GET', url: '/v1/secrets/DB_PASSWORD/values/production' },
  { name: 'read production by version', method: 'GET', url: '/v1/secrets/DB_PASSWORD/values/production?version=1' },
  { name: 'write production', method: 'PUT', url: '/v1/secrets/DB_PASSWORD/values/production', body: { value: 'planted-by-a-staging-run' } },
  { name: 'list production versions', method: 'GET', url: '/v1/secrets/DB_PASSWORD/values/production/versions' },
  { name: 'version check production', method: 'POST', url: '/v1/secrets/versions', body: { environment: 'production', names: ['DB_PASSWORD'] } },
  { name: 'version check staging', method: 'POST', url: '/v1/secrets/versions', body: { environment: 'staging', names: ['DB_PASSWORD'] } },
  { name: 'grant itself more', method: 'POST', url: '/v1/grants', body: { principalType: 'machine', principalId: 'x', role: 'builder' } },
  { name: 'list secrets', method: 'GET', url: '/v1/secrets' },
];

const scriptAutomation = (over: Partial<AutomationDefinition> = {}): AutomationDefinition => ({
  name: 'nightly-check', runAs: 'prod-bot', environments: ['staging'], trigger: { type: 'manual' },
  steps: [{ id: 's', type: 'script', source: 'export default async () => null' }],
  ...over,
});

describeEachDialect('automation runs are bound to their environment', (dialect) => {
  let h: Harness;
  let runner: ReturnType<typeof createRunner>;
  let automations: ReturnType<typeof createAutomationService>;
  const proxied: TenantContext[] = [];
  let seen: Seen = {};
  let runToken = '';
  /** Probes a test adds for the next run (they may name earlier runs). */
  let extraProbes: Probe[] = [];

  before(async () => {
    h = await createHarness(dialect);
    // A machine that may do nearly everything, everywhere.
    const bot = await h.services.machines.create(h.ctx, { name: 'prod-bot', kind: 'client_secret' });
    for (const role of ['builder', 'secret-admin', 'tenant-admin']) await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: bot.id, role });
    for (const name of ['API_KEY', 'DB_PASSWORD']) await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, 'DB_PASSWORD', 'staging', { value: 'staging-db-password' });
    await h.services.values.write(h.ctx, 'DB_PASSWORD', 'production', { value: 'prod-db-password-canary' });
    automations = createAutomationService({
      db: h.storage.db, authz: h.services.authz, secrets: h.services.secrets, audit: h.services.audit, clock: h.clock,
      connectors: { list: async () => [{ name: 'api', environment: 'staging', type: 'http', slots: { token: 'API_KEY' }, personal: false }] },
      detectCredentials: () => [],
    });
    const proxy: ProxyPort = { call: async (ctx) => { proxied.push(ctx); return { status: 200, headers: {}, body: null, truncated: false }; } };
    runner = createRunner({
      db: h.storage.db, automations, tenants: h.services.tenants, tokens: h.services.tokens, audit: h.services.audit, clock: h.clock,
      machines: runAsLock(h), proxy,
      scripts: {
        run: async (opts) => {
          runToken = opts.env.KEYHOLD_TOKEN;
          seen = {};
          for (const p of [...probes, ...extraProbes]) {
            const res = await h.app.inject({ method: p.method, url: p.url, headers: { authorization: `Bearer ${runToken}` }, ...(p.body ? { payload: p.body as object } : {}) });
            seen[p.name] = { status: res.statusCode, body: res.json() };
          }
          return { ok: true, output: { upstream: `answer-from-${opts.env.KEYHOLD_ENVIRONMENT}` }, stdout: '', stderr: '', timedOut: false };
        },
      },
      redactors: { forTenant: async () => createRedactor([]) },
      keyholdAddress: () => 'http://127.0.0.1:1',
    });
    await automations.create(h.ctx, scriptAutomation());
  });
  after(async () => {
    await runner.drain();
    await h.close();
  });

  test('a staging run reads staging, but its token is refused in production: read, write, versions, version checks', async () => {
    const run = await runner.start(h.ctx, 'nightly-check', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    assert.equal(run.status, 'succeeded', JSON.stringify(run));
    assert.equal(seen['read staging']!.status, 200);
    assert.equal(seen['read staging']!.body.value, 'staging-db-password');
    for (const name of ['read production', 'read production by version', 'write production']) {
      assert.equal(seen[name]!.status, 403, `${name}: ${JSON.stringify(seen[name])}`);
      assert.equal(seen[name]!.body.error.code, 'FORBIDDEN', name);
    }
    // A refused list is answered as a miss, as for every caller (the denial is still audited, below).
    assert.equal(seen['list production versions']!.body.error.code, 'SECRET_NOT_FOUND');
    assert.ok(!JSON.stringify(seen).includes('prod-db-password-canary'), 'no production value reached the script');
    assert.deepEqual(seen['version check production']!.body.versions, { DB_PASSWORD: null });
    assert.deepEqual(seen['version check staging']!.body.versions, { DB_PASSWORD: 1 });
    const current = await h.services.values.read(h.ctx, 'DB_PASSWORD', 'production');
    assert.equal(current.value, 'prod-db-password-canary', 'the refused write wrote nothing');
  });

  test('outside any environment the run token may list, and nothing else (no tenant administration)', () => {
    assert.equal(seen['list secrets']!.status, 200);
    assert.equal(seen['grant itself more']!.status, 403);
  });

  test('each refusal is an audited denial naming the run token and the binding', async () => {
    const events = await h.storage.db.selectFrom('audit_events').select(['action', 'environment', 'reason', 'context'])
      .where('outcome', '=', 'denied').where('actor_type', '=', 'machine').execute();
    const binding = events.filter((e) => JSON.parse(e.context).policies === 'builtin:environment-binding');
    const actions = new Set(binding.map((e) => `${e.action}@${e.environment ?? ''}`));
    for (const a of ['authz.use@production', 'authz.write@production', 'authz.list@production', 'authz.admin@']) assert.ok(actions.has(a), `${a} in ${[...actions].join(', ')}`);
    for (const e of binding) {
      assert.equal(e.reason, 'FORBIDDEN');
      assert.equal(JSON.parse(e.context).boundEnvironment, 'staging');
    }
  });

  test('a staging run cannot read the record of a production run, nor find it in the run list', async () => {
    await automations.create(h.ctx, scriptAutomation({ name: 'both', environments: ['staging', 'production'] }));
    const prod = await runner.start(h.ctx, 'both', { environment: 'production', input: {}, trigger: 'manual', wait: true });
    assert.equal(prod.steps[0]!.output && (prod.steps[0]!.output as { upstream: string }).upstream, 'answer-from-production');
    extraProbes = [{ name: 'read production run', method: 'GET', url: `/v1/runs/${prod.id}` }, { name: 'list runs', method: 'GET', url: '/v1/runs?limit=500' }];
    try {
      await runner.start(h.ctx, 'both', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    } finally {
      extraProbes = [];
    }
    assert.equal(seen['read production run']!.status, 404, JSON.stringify(seen['read production run']));
    assert.equal(seen['read production run']!.body.error.code, 'RUN_NOT_FOUND');
    assert.equal(seen['list runs']!.status, 200);
    const listed = seen['list runs']!.body.items as Array<{ environment: string }>;
    assert.ok(listed.length > 0 && listed.every((r) => r.environment === 'staging'), JSON.stringify(listed.map((r) => r.environment)));
    assert.ok(!JSON.stringify(seen).includes('answer-from-production'));
  });

  test('a person whose grants are narrowed to staging reads staging runs only', async () => {
    const vic = await userContext(h, h.ctx.tenantId, 'vic');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: vic.id, role: 'viewer', environments: ['staging'] });
    const runs = createRunQueries({ db: h.storage.db, authz: h.services.authz });
    const all = await runs.list(h.ctx, { limit: 500 });
    const production = all.find((r) => r.environment === 'production')!;
    const staging = all.find((r) => r.environment === 'staging')!;
    assert.equal(await codeOf(runs.get(vic.ctx(), production.id)), 'RUN_NOT_FOUND');
    assert.equal((await runs.get(vic.ctx(), staging.id)).id, staging.id);
    const listed = await runs.list(vic.ctx(), { limit: 500 });
    assert.deepEqual([...new Set(listed.map((r) => r.environment))], ['staging']);
    assert.equal(listed.length, all.filter((r) => r.environment === 'staging').length);
    assert.equal((await runs.list(h.ctx, { limit: 500 })).length, all.length, 'root still reads every run');
  });

  test('the run token dies when the run ends', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/secrets/DB_PASSWORD/values/staging', headers: { authorization: `Bearer ${runToken}` } });
    assert.equal(res.statusCode, 401);
  });

  test('the runner acting in process (proxy steps) is bound too', async () => {
    await automations.create(h.ctx, scriptAutomation({
      name: 'proxied', steps: [{ id: 'call', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/x' }],
    }));
    await runner.start(h.ctx, 'proxied', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    const ctx = proxied.at(-1)!;
    assert.equal(ctx.actor.boundEnvironment, 'staging');
    assert.equal(await codeOf(h.services.values.read(ctx, 'DB_PASSWORD', 'production', { purpose: 'use' })), 'FORBIDDEN');
    assert.equal((await h.services.values.read(ctx, 'DB_PASSWORD', 'staging', { purpose: 'use' })).value, 'staging-db-password');
  });

  // The schema gives a Machine its name and policy tests take one: a policy naming the run identity must
  // hold for every request of a run, its script's (with the run token) as its proxy steps' (in process).
  test('a tenant policy naming the run identity refuses its script as it refuses its proxy steps', async () => {
    await h.services.policies.put(h.ctx, {
      text: '@id("prod-bot-out-of-staging") forbid (principal is Keyhold::Machine, action == Keyhold::Action::"use", resource) '
        + 'when { principal.name == "prod-bot" && context.environment == "staging" };',
      comment: 'prod-bot stays out of staging',
    });
    await automations.create(h.ctx, scriptAutomation({
      name: 'named', steps: [{ id: 'call', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/x' }, ...scriptAutomation().steps],
    }));
    extraProbes = [{ name: 'whoami', method: 'GET', url: '/v1/auth/whoami' }];
    try {
      await runner.start(h.ctx, 'named', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
      assert.equal(await codeOf(h.services.values.read(proxied.at(-1)!, 'DB_PASSWORD', 'staging', { purpose: 'use' })), 'FORBIDDEN');
    } finally {
      extraProbes = [];
      await h.services.policies.rollback(h.ctx, 0);
    }
    assert.deepEqual([seen['read staging']!.status, seen['read staging']!.body.error?.code], [403, 'FORBIDDEN'], JSON.stringify(seen['read staging']));
    assert.ok(!JSON.stringify(seen).includes('staging-db-password'), 'the value reached the script');
    assert.deepEqual([seen['whoami']!.body.type, seen['whoami']!.body.name], ['machine', 'prod-bot']);
  });

  test('a staging builder cannot run by hand an automation acting as a machine more capable than they are: no run, no token', async () => {
    const kim = await userContext(h, h.ctx.tenantId, 'kim');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: kim.id, role: 'builder', environments: ['staging'] });
    const runsBefore = await h.storage.db.selectFrom('automation_runs').select('id').where('tenant_id', '=', h.ctx.tenantId).execute();
    seen = {};
    // prod-bot holds tenant-admin in staging; kim may list the automation but not make prod-bot act for her.
    assert.equal(await codeOf(runner.start(kim.ctx(), 'nightly-check', { environment: 'staging', input: {}, trigger: 'manual', wait: true })), 'FORBIDDEN');
    const runsAfter = await h.storage.db.selectFrom('automation_runs').select('id').where('tenant_id', '=', h.ctx.tenantId).execute();
    assert.equal(runsAfter.length, runsBefore.length, 'no run was started');
    assert.deepEqual(seen, {}, 'the script never ran with the run token');
  });
});

describeEachDialect('authoring an automation needs the permissions of its run identity where it runs', (dialect) => {
  let h: Harness;
  let automations: ReturnType<typeof createAutomationService>;
  before(async () => {
    h = await createHarness(dialect);
    const everywhere = await h.services.machines.create(h.ctx, { name: 'prod-bot', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: everywhere.id, role: 'builder' });
    const writer = await h.services.machines.create(h.ctx, { name: 'writer-bot', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: writer.id, role: 'secret-admin', environments: ['staging'] });
    await h.services.machines.create(h.ctx, { name: 'idle-bot', kind: 'client_secret' });
    for (const name of ['API_KEY', 'DB_PASSWORD']) await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    automations = createAutomationService({
      db: h.storage.db, authz: h.services.authz, secrets: h.services.secrets, audit: h.services.audit, clock: h.clock,
      connectors: { list: async () => [{ name: 'api', environment: 'staging', type: 'http', slots: { token: 'API_KEY' }, personal: false }] },
      detectCredentials: () => [],
    });
  });
  after(() => h.close());

  test('a staging builder cannot make a staging automation run as a machine that may write there', async () => {
    const sam = await userContext(h, h.ctx.tenantId, 'sam');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: sam.id, role: 'builder', environments: ['staging'] });
    assert.equal(await codeOf(automations.create(sam.ctx(), scriptAutomation({ name: 'borrow', runAs: 'writer-bot' }))), 'FORBIDDEN');
    // Nothing more than sam holds in staging: allowed (the run's token is bound to staging).
    assert.equal(await codeOf(automations.create(sam.ctx(), scriptAutomation({ name: 'fine', runAs: 'prod-bot' }))), 'ok');
    assert.equal(await codeOf(automations.create(sam.ctx(), scriptAutomation({ name: 'idle', runAs: 'idle-bot' }))), 'ok');
    // Nor in an environment sam holds nothing in.
    assert.equal(await codeOf(automations.create(sam.ctx(), scriptAutomation({ name: 'wider', runAs: 'prod-bot', environments: ['staging', 'production'] }))), 'FORBIDDEN');
    const names = (await automations.list(h.ctx)).map((a) => a.definition.name);
    assert.ok(!names.includes('borrow') && !names.includes('wider'));
  });

  test('an update that points runAs at a more capable machine is refused, and the definition stays as it was', async () => {
    const sam = await h.storage.db.selectFrom('users').select('id').where('username', '=', 'sam').executeTakeFirstOrThrow();
    const ctx: TenantContext = { tenantId: h.ctx.tenantId, requestId: 't', actor: { type: 'user', id: sam.id, name: 'sam', homeTenantId: h.ctx.tenantId, mfaAt: h.clock.now() } };
    assert.equal(await codeOf(automations.update(ctx, 'fine', scriptAutomation({ name: 'fine', runAs: 'writer-bot' }), 1)), 'FORBIDDEN');
    const after = await automations.get(h.ctx, 'fine');
    assert.equal(after.revision, 1);
    assert.equal(after.definition.runAs, 'prod-bot');
    // Someone else's automation acting as a capable machine cannot be edited, deleted or run by hand by sam either.
    await automations.create(h.ctx, scriptAutomation({ name: 'admins', runAs: 'writer-bot' }));
    assert.equal(await codeOf(automations.update(ctx, 'admins', scriptAutomation({ name: 'admins', runAs: 'prod-bot' }), 1)), 'FORBIDDEN');
    assert.equal(await codeOf(automations.remove(ctx, 'admins')), 'FORBIDDEN');
  });

  test('without a script, the machine’s use of secrets the author may not use is still refused (name patterns count)', async () => {
    const pat = await userContext(h, h.ctx.tenantId, 'pat');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: pat.id, role: 'builder', environments: ['staging'], namePatterns: ['API_*'] });
    const def = scriptAutomation({ name: 'http-only', steps: [{ id: 'call', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/x' }] });
    assert.equal(await codeOf(automations.create(pat.ctx(), def)), 'FORBIDDEN', 'prod-bot may use DB_PASSWORD in staging; pat may not');
    assert.equal(await codeOf(automations.create(pat.ctx(), { ...def, runAs: 'idle-bot' })), 'ok');
  });

  test('a secret the author may not even list is answered exactly like one that does not exist (save, dependents)', async () => {
    const pat = (await h.storage.db.selectFrom('users').select('id').where('username', '=', 'pat').executeTakeFirstOrThrow()).id;
    const ctx: TenantContext = { tenantId: h.ctx.tenantId, requestId: 't', actor: { type: 'user', id: pat, name: 'pat', homeTenantId: h.ctx.tenantId, mfaAt: h.clock.now() } };
    const answer = async (name: string) => {
      const inHeader = scriptAutomation({ name: 'probe', runAs: 'idle-bot', steps: [{ id: 'call', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/x', headers: { 'X-Key': `{{ secrets.${name} }}` } }] });
      const inScript = scriptAutomation({ name: 'probe', runAs: 'idle-bot', steps: [{ id: 's', type: 'script', source: `export default async (i, { secrets }) => secrets.get('${name}')` }] });
      const inventory = createInventory({ automations, connectors: { list: async () => [] }, secrets: h.services.secrets });
      return Promise.all([inHeader, inScript].map((d) => automations.create(ctx, d).then(() => 'ok', (e: Error & { code: string }) => `${e.code}: ${e.message.replace(name, 'NAME')}`))
        .concat([inventory.dependentsOf(ctx, name).then(() => 'ok', (e: Error & { code: string }) => `${e.code}: ${e.message.replace(name, 'NAME')}`)]));
    };
    const missing = await answer('NO_SUCH_SECRET');
    assert.match(missing[0]!, /^INVALID_REFERENCE/);
    assert.deepEqual(await answer('DB_PASSWORD'), missing);
  });

  test('an edit or delete racing an admin\'s edit is checked against the revision it replaces, not the one it read', async () => {
    const sam = (await h.storage.db.selectFrom('users').select('id').where('username', '=', 'sam').executeTakeFirstOrThrow()).id;
    const ctx: TenantContext = { tenantId: h.ctx.tenantId, requestId: 't', actor: { type: 'user', id: sam, name: 'sam', homeTenantId: h.ctx.tenantId, mfaAt: h.clock.now() } };
    // While sam's call is between its authoring check and its write, an admin points the automation at a capable machine.
    let meanwhile: (() => Promise<unknown>) | null = null;
    const racing = createAutomationService({
      db: h.storage.db, authz: h.services.authz, secrets: h.services.secrets, audit: h.services.audit, clock: h.clock, detectCredentials: () => [],
      connectors: {
        list: async () => {
          const run = meanwhile;
          meanwhile = null;
          await run?.();
          return [{ name: 'api', environment: 'staging', type: 'http', slots: { token: 'API_KEY' }, personal: false }];
        },
      },
    });
    for (const name of ['raced-edit', 'raced-delete']) {
      await automations.create(h.ctx, scriptAutomation({ name, runAs: 'idle-bot' }));
      meanwhile = () => automations.update(h.ctx, name, scriptAutomation({ name, runAs: 'writer-bot' }), 1);
      const attempt = name === 'raced-edit' ? racing.update(ctx, name, scriptAutomation({ name, runAs: 'idle-bot' }), 2) : racing.remove(ctx, name);
      assert.notEqual(await codeOf(attempt), 'ok', name);
      await (meanwhile as (() => Promise<unknown>) | null)?.(); // refused before it got that far: the admin's edit lands now
      const after = await automations.get(h.ctx, name);
      assert.equal(after.definition.runAs, 'writer-bot', `${name}: the admin's revision stands`);
      assert.equal(after.revision, 2);
    }
  });

  test('an author granted what the machine holds may use it, and the refusals were audited', async () => {
    const sam = await h.storage.db.selectFrom('users').select('id').where('username', '=', 'sam').executeTakeFirstOrThrow();
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: sam.id, role: 'secret-admin', environments: ['staging'] });
    const ctx: TenantContext = { tenantId: h.ctx.tenantId, requestId: 't', actor: { type: 'user', id: sam.id, name: 'sam', homeTenantId: h.ctx.tenantId, mfaAt: h.clock.now() } };
    assert.equal(await codeOf(automations.create(ctx, scriptAutomation({ name: 'borrow', runAs: 'writer-bot' }))), 'ok');
    const denied = await h.storage.db.selectFrom('audit_events').select(['action', 'reason']).where('actor_id', '=', sam.id).where('outcome', '=', 'denied').execute();
    assert.ok(denied.some((e) => e.action === 'authz.write' && e.reason === 'FORBIDDEN'), JSON.stringify(denied));
  });
});
