import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KyselyPlugin } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runAsLock } from '../../../test/helpers/identities.ts';
import { createRedactor } from '../redaction/redactor.ts';
import { createAutomationService } from './automation-service.ts';
import { createRunner } from './runner.ts';
import type { AutomationDefinition } from './types.ts';

/**
 * The run list answers summaries: each run with its steps' status and error, never their outputs
 * or logs, and without reading the column that holds them. A run's steps may hold megabytes; a
 * caller listing 500 runs must not make the server load every one of them (review finding: memory
 * exhaustion through `GET /v1/runs?limit=500`). `GET /v1/runs/:id` still answers the full record.
 */

/** Every row the database answers while `watching`: how many bytes, and whether any carried `steps`. */
function resultTap() {
  const seen = { watching: false, bytes: 0, stepsColumns: 0 };
  const plugin: KyselyPlugin = {
    transformQuery: (args) => args.node,
    transformResult: async ({ result }) => {
      if (seen.watching) {
        for (const row of result.rows as Array<Record<string, unknown>>) {
          seen.bytes += JSON.stringify(row).length;
          if ('steps' in row) seen.stepsColumns++;
        }
      }
      return result;
    },
  };
  return { seen, plugin };
}

const BIG = 200 * 1024;

describeEachDialect('the run list', (dialect) => {
  let h: Harness;
  let runner: ReturnType<typeof createRunner>;
  let makeRunner: (limits?: Parameters<typeof createRunner>[0]['limits']) => ReturnType<typeof createRunner>;
  let automations: ReturnType<typeof createAutomationService>;
  let scriptInput: unknown = null;
  const tap = resultTap();
  const get = async (url: string) => {
    const res = await h.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 200, res.body.slice(0, 300));
    return { size: res.body.length, json: res.json() };
  };

  before(async () => {
    h = await createHarness(dialect, { plugins: [tap.plugin] });
    await h.services.machines.create(h.ctx, { name: 'list-bot', kind: 'client_secret' });
    automations = createAutomationService({
      db: h.storage.db, authz: h.services.authz, secrets: h.services.secrets, audit: h.services.audit, clock: h.clock,
      connectors: { list: async () => [{ name: 'api', environment: 'staging', type: 'http', slots: {}, personal: false }] },
      detectCredentials: () => [],
    });
    makeRunner = (limits) => createRunner({
      db: h.storage.db, automations, tenants: h.services.tenants, tokens: h.services.tokens, audit: h.services.audit, clock: h.clock,
      machines: runAsLock(h), ...(limits ? { limits } : {}),
      proxy: { call: async (_c, input) => ({ status: input.run.step === 'last' ? 500 : 200, headers: {}, body: { blob: 'o'.repeat(BIG), step: input.run.step }, truncated: false }) },
      scripts: {
        run: async (opts) => {
          scriptInput = opts.input;
          return opts.source.includes('throw')
            ? { ok: false, output: null, stdout: '', stderr: '', error: 'e'.repeat(BIG), timedOut: false }
            : { ok: true, output: { blob: 'p'.repeat(BIG) }, stdout: 'l'.repeat(BIG), stderr: '', timedOut: false };
        },
      },
      redactors: { forTenant: async () => createRedactor([]) },
      keyholdAddress: () => 'http://127.0.0.1:1',
    });
    runner = makeRunner();
    const def: AutomationDefinition = {
      name: 'bulky', runAs: 'list-bot', environments: ['staging'], trigger: { type: 'manual' },
      steps: [
        { id: 'fetch', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/big' },
        { id: 'shape', type: 'script', source: 'export default async (input) => input' },
        { id: 'last', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/fails' },
      ],
    };
    await automations.create(h.ctx, def);
    for (let i = 0; i < 20; i++) await runner.start(h.ctx, 'bulky', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
  });
  after(async () => {
    await runner.drain();
    await h.close();
  });

  test('listing 20 runs with large outputs answers summaries only, and never reads the steps column', async () => {
    tap.seen.watching = true;
    let listed: Awaited<ReturnType<typeof get>>;
    try {
      listed = await get('/v1/runs?limit=500');
    } finally {
      tap.seen.watching = false;
    }
    const items = listed.json.items as Array<{ status: string; error: string | null; steps: Array<Record<string, unknown>> }>;
    assert.equal(items.length, 20);
    for (const run of items) {
      assert.equal(run.status, 'failed');
      assert.match(run.error!, /step "last" failed/);
      assert.deepEqual(run.steps.map((s) => Object.keys(s).sort()), Array(3).fill(['durationMs', 'error', 'id', 'startedAt', 'status', 'type']));
      assert.deepEqual(run.steps.map((s) => [s.id, s.type, s.status]), [['fetch', 'http', 'succeeded'], ['shape', 'script', 'succeeded'], ['last', 'http', 'failed']]);
      assert.match(String(run.steps[2]!.error), /^UPSTREAM_STATUS/);
    }
    assert.ok(listed.size < 64 * 1024, `the list answered ${listed.size} bytes`);
    assert.equal(tap.seen.stepsColumns, 0, 'no row read for the list carried the steps column');
    assert.ok(tap.seen.bytes < 256 * 1024, `the database answered ${tap.seen.bytes} bytes for the list`);
  });

  test('one run still answers its full steps, outputs and logs', async () => {
    const [first] = (await get('/v1/runs?limit=1')).json.items as Array<{ id: string }>;
    const shown = (await get(`/v1/runs/${first!.id}`)).json as { steps: Array<{ output: { body?: { blob: string }; blob?: string }; log: string }> };
    assert.equal(shown.steps[0]!.output.body!.blob.length, BIG);
    assert.equal(shown.steps[1]!.output.blob!.length, BIG);
    assert.equal(shown.steps[1]!.log.length, BIG);
  });

  test('a run stored before the summary column is listed with a summary computed from its steps', async () => {
    const [old] = (await get('/v1/runs?limit=1')).json.items as Array<{ id: string; steps: unknown }>;
    await h.storage.db.updateTable('automation_runs').set({ step_summary: null }).where('id', '=', old!.id).execute();
    const relisted = (await get('/v1/runs?limit=500')).json.items as Array<{ id: string; steps: unknown }>;
    assert.deepEqual(relisted.find((r) => r.id === old!.id)!.steps, old!.steps);
    assert.ok(!JSON.stringify(relisted).includes('oooooooo'), 'no output in the list');
  });

  test('past the run record budget, later steps keep status and error but their output and log are replaced by a marker', async () => {
    const small = makeRunner({ maxRunRecordBytes: BIG + 64 * 1024 });
    await automations.create(h.ctx, {
      name: 'over-budget', runAs: 'list-bot', environments: ['staging'], trigger: { type: 'manual' },
      steps: [
        { id: 'fetch', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/big' },
        { id: 'shape', type: 'script', source: 'export default async (input) => input' },
        { id: 'boom', type: 'script', source: 'export default async () => { throw new Error("x") }', continueOnError: true },
        { id: 'last', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/fails' },
      ],
    });
    const started = await small.start(h.ctx, 'over-budget', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    await small.drain();
    const run = (await get(`/v1/runs/${started.id}`)).json as { steps: Array<{ status: string; error: string | null; output: any; log: string }> };
    assert.deepEqual(run.steps.map((s) => s.status), ['succeeded', 'succeeded', 'failed', 'failed']);
    assert.equal(run.steps[0]!.output.body.blob.length, BIG, 'the first step fits and is kept whole');
    for (const step of [run.steps[1]!, run.steps[3]!]) {
      assert.equal(step.output.truncated, true);
      assert.match(step.output.reason, /^RUN_RECORD_LIMIT/);
      assert.match(step.log, /RUN_RECORD_LIMIT/);
    }
    assert.equal(run.steps[1]!.error, null);
    assert.match(run.steps[3]!.error!, /^UPSTREAM_STATUS/, 'a cut step keeps its error');
    // A script's error text is the script's to choose: clipped, it fits the budget and is kept.
    assert.match(run.steps[2]!.error!, /^SCRIPT_FAILED: e+… \(error truncated\)$/);
    assert.ok(run.steps[2]!.error!.length < 8192, 'a step error is clipped');
    assert.deepEqual([run.steps[2]!.output, run.steps[2]!.log], [null, '']);
    const stored = await h.storage.db.selectFrom('automation_runs').select(['steps', 'step_summary']).where('id', '=', started.id).executeTakeFirstOrThrow();
    assert.ok(stored.steps.length < BIG + 96 * 1024, `the stored steps take ${stored.steps.length} bytes`);
    assert.ok(stored.step_summary!.length < 16 * 1024, `the stored summary takes ${stored.step_summary!.length} bytes`);
    assert.deepEqual(started.steps.map((s) => s.status), run.steps.map((s) => s.status));
  });

  test('a step still reads the whole output of an earlier step whose stored record was cut', async () => {
    const tiny = makeRunner({ maxRunRecordBytes: 1024 });
    await automations.create(h.ctx, {
      name: 'reads-cut', runAs: 'list-bot', environments: ['staging'], trigger: { type: 'manual' },
      steps: [
        { id: 'fetch', type: 'http', connector: '{{ connectors.api }}', method: 'GET', path: '/big' },
        { id: 'shape', type: 'script', source: 'export default async (input) => input' },
      ],
    });
    const run = await tiny.start(h.ctx, 'reads-cut', { environment: 'staging', input: {}, trigger: 'manual', wait: true });
    await tiny.drain();
    assert.equal((run.steps[0]!.output as { truncated: boolean }).truncated, true, 'the first step\'s stored output was cut');
    assert.equal((run.steps[1]!.output as { truncated: boolean }).truncated, true);
    // The script saw the first step's whole answer: the budget changes what is kept, not what the run does.
    assert.equal((scriptInput as { steps: { fetch: { output: { body: { blob: string } } } } }).steps.fetch.output.body.blob.length, BIG);
    assert.equal(run.status, 'succeeded');
  });
});
