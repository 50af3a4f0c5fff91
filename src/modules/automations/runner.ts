import type { Kysely } from 'kysely';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Executor } from '../../storage/database.ts';
import type { AutomationRunsTable, Database } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import { redactDeepWith, type Redactor } from '../redaction/redactor.ts';
import type { TokenService } from '../auth/token-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { createAutomationRepository } from './automation-repository.ts';
import { toAutomation, type AutomationService } from './automation-service.ts';
import { clipError, withinBudget } from './record-budget.ts';
import { summarizeSteps, toRun } from './runs.ts';
import { substituteData, TemplateInjectionError } from './templates.ts';
import type { AutomationDefinition, HttpStep, Run, RunTrigger, ScriptStep, StepRecord } from './types.ts';
import { connectorOf } from './validate.ts';

/** What the runner needs of the credential proxy (src/modules/proxy). */
export interface ProxyPort {
  call(ctx: TenantContext, input: {
    environment: string; connector: string;
    request: { method: string; path: string; query?: Record<string, string>; headers?: Record<string, string>; body?: unknown };
    run: { runId: string; automation: string; step: string };
  }): Promise<{ status: number; headers: Record<string, string>; body: unknown; truncated: boolean }>;
}

/** What the runner needs of the script sandbox (src/modules/scripts). */
export interface ScriptPort {
  run(opts: {
    source: string; input: unknown; timeoutMs: number; maxOutputBytes: number; redactor: Redactor; extraCa?: string;
    env: { KEYHOLD_ADDR: string; KEYHOLD_TOKEN: string; KEYHOLD_ENVIRONMENT: string };
  }): Promise<{ ok: boolean; output: unknown; stdout: string; stderr: string; error?: string; timedOut: boolean }>;
}

/** The tenant's redactor: script steps need the library's own (run-script.ts cuts output by where matches may start). */
export type { Redactor };

export interface RunnerLimits {
  runTimeoutMs: number;
  scriptTimeoutMs: number;
  maxScriptOutputBytes: number;
  /** The JSON bytes a run's stored steps may take together; later steps keep status and error, not output or log. */
  maxRunRecordBytes: number;
}

export const DEFAULT_RUNNER_LIMITS: RunnerLimits = { runTimeoutMs: 300_000, scriptTimeoutMs: 30_000, maxScriptOutputBytes: 1_048_576, maxRunRecordBytes: 8 * 1_048_576 };

function describeError(err: unknown): string {
  if (isKeyholdError(err)) return `${err.code}: ${err.message}`;
  if (err instanceof TemplateInjectionError) return `TEMPLATE_INJECTION: ${err.message}`;
  return 'INTERNAL: the step failed unexpectedly';
}

/**
 * Runs automations: in the run's environment, as the automation's machine identity, with a
 * short-lived token issued for the run, bound to the run's tenant and environment (the authorizer
 * refuses it anywhere else, SPEC §1), and revoked when the run ends, however it ends. `http` steps
 * go through the credential proxy (the runner never holds a credential); `script` steps run in a
 * child process with that token. Every output, log line and error is redacted with the tenant's known values
 * before it is stored or returned.
 */
export function createRunner(deps: {
  db: Kysely<Database>;
  automations: Pick<AutomationService, 'load' | 'requireAuthoring'>;
  tenants: Pick<TenantService, 'environment'>;
  tokens: Pick<TokenService, 'issue' | 'revoke' | 'forgetToken' | 'authenticate'>;
  /**
   * Inside the transaction that issues a run's token: is the run identity still live? It must lock
   * the identity's row where the database can (machine-repository.ts `lockLive`), so a disable
   * either waits for the token and then revokes it, or commits first and no token is issued.
   */
  machines: { lockLive(executor: Executor, machineId: string): Promise<boolean> };
  proxy: ProxyPort;
  scripts: ScriptPort;
  redactors: { forTenant(tenantId: string): Promise<Redactor> };
  /** Where scripts reach this server (null: not listening, script steps fail clearly). */
  keyholdAddress: () => string | null;
  /** The CA certificates (PEM) scripts trust for that address besides Node's bundled ones: a TLS server's issuer. */
  keyholdCa?: () => string | null;
  audit: Pick<AuditLog, 'appendInTx'>;
  clock: Clock;
  limits?: Partial<RunnerLimits>;
  onBackgroundError?: (err: unknown) => void;
}) {
  const { db, automations, tenants, tokens, machines, proxy, scripts, redactors, keyholdAddress, audit, clock } = deps;
  const limits = { ...DEFAULT_RUNNER_LIMITS, ...deps.limits };
  const repo = createAutomationRepository(db);
  const inFlight = new Set<Promise<unknown>>();
  /** Set by `drain`: the node is stopping, and no run starts any more. */
  let draining = false;

  async function httpStep(machineCtx: TenantContext, step: HttpStep, data: Parameters<typeof substituteData>[1], run: { runId: string; automation: string; environment: string }) {
    const request = substituteData({ method: step.method, path: step.path, query: step.query, headers: step.headers, body: step.body }, data) as Parameters<ProxyPort['call']>[1]['request'];
    const res = await proxy.call(machineCtx, { environment: run.environment, connector: connectorOf(step)!, request, run: { runId: run.runId, automation: run.automation, step: step.id } });
    const ok = res.status < 400;
    return {
      ok, output: { status: res.status, headers: res.headers, body: res.body, truncated: res.truncated },
      log: `${step.method} ${String(request.path)} -> ${res.status}${res.truncated ? ' (body truncated)' : ''}`,
      error: ok ? null : `UPSTREAM_STATUS: the destination answered ${res.status}`,
    };
  }

  async function scriptStep(step: ScriptStep, data: unknown, token: string, environment: string, redactor: Redactor, remainingMs: number) {
    const addr = keyholdAddress();
    if (!addr) return { ok: false, output: null, log: '', error: 'SCRIPT_UNAVAILABLE: script steps need the server to listen on an address' };
    const ca = deps.keyholdCa?.() ?? null;
    const r = await scripts.run({
      source: step.source, input: data, redactor, maxOutputBytes: limits.maxScriptOutputBytes, ...(ca ? { extraCa: ca } : {}),
      timeoutMs: Math.min(step.timeoutMs ?? limits.scriptTimeoutMs, remainingMs),
      env: { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: token, KEYHOLD_ENVIRONMENT: environment },
    });
    const log = [r.stdout, r.stderr].filter((s) => s.length > 0).join('\n');
    return { ok: r.ok, output: r.output, log, error: r.ok ? null : r.timedOut ? 'SCRIPT_TIMEOUT: the script ran past its time limit' : `SCRIPT_FAILED: ${r.error ?? 'the script failed'}` };
  }

  async function execute(tenantId: string, def: AutomationDefinition, runId: string, environment: string, input: unknown, machine: { id: string; name: string }, token: { id: string; token: string }) {
    const machineCtx: TenantContext = {
      tenantId, requestId: runId, sourceIp: '127.0.0.1', userAgent: `keyhold-runner run=${runId}`,
      actor: { type: 'machine', id: machine.id, name: machine.name, homeTenantId: tenantId, credentialId: token.id, boundEnvironment: environment },
    };
    let redactor = await redactors.forTenant(tenantId);
    const deadline = clock.now() + limits.runTimeoutMs;
    const data = { input, steps: {} as Record<string, unknown> };
    const records: StepRecord[] = [];
    let storedBytes = 2;
    let failure: string | null = null;
    for (const step of def.steps) {
      if (failure !== null) {
        records.push({ id: step.id, type: step.type, status: 'skipped', startedAt: null, durationMs: 0, output: null, log: '', error: null });
        continue;
      }
      const startedAt = clock.now();
      const t0 = performance.now();
      let result: { ok: boolean; output: unknown; log: string; error: string | null };
      try {
        if (startedAt >= deadline) throw new Error('deadline');
        // The identity may have been disabled, or the run's token revoked, since the last step:
        // a step runs only with a credential that still authenticates (the proxy is called in
        // process, with no token on the wire to refuse).
        if ((await tokens.authenticate(token.token)) === null) fail('MACHINE_DISABLED', 'the run identity was disabled or the run token revoked during the run');
        result = step.type === 'http'
          ? await httpStep(machineCtx, step, data, { runId, automation: def.name, environment })
          : await scriptStep(step, data, token.token, environment, redactor, deadline - startedAt);
      } catch (err) {
        const message = err instanceof Error && err.message === 'deadline' ? 'RUN_TIMEOUT: the run ran past its time limit' : describeError(err);
        result = { ok: false, output: null, log: '', error: message };
      }
      // A value written during the step (a rotation, a credential minted for the run) is known only to a redactor built since.
      redactor = await redactors.forTenant(tenantId);
      const full: StepRecord = {
        id: step.id, type: step.type, status: result.ok ? 'succeeded' : 'failed', startedAt: new Date(startedAt).toISOString(),
        durationMs: Math.round(performance.now() - t0), output: redactDeepWith((text) => redactor.redact(text), result.output ?? null),
        log: redactor.redact(result.log), error: result.error === null ? null : clipError(redactor.redact(result.error)),
      };
      // Later steps read the whole output; the stored record keeps it only within the run's budget.
      const kept = withinBudget(full, storedBytes, limits.maxRunRecordBytes);
      const record = kept.record;
      storedBytes = kept.usedBytes;
      records.push(record);
      data.steps[step.id] = { status: full.status, output: full.output };
      if (!result.ok && !step.continueOnError) failure = `step "${step.id}" failed: ${record.error}`;
    }
    return { records, failure };
  }

  async function finish(tenantId: string, runId: string, automation: { id: string; name: string }, tokenId: string | null, actorCtx: TenantContext, outcome: { records: StepRecord[]; failure: string | null }) {
    const status = outcome.failure === null ? 'succeeded' : 'failed';
    try {
      await db.transaction().execute(async (trx) => {
        await repo.finishRun(tenantId, runId, {
          status, finished_at: clock.now(), steps: JSON.stringify(outcome.records), step_summary: JSON.stringify(summarizeSteps(outcome.records)), error: outcome.failure,
        }, trx);
        if (tokenId) await tokens.revoke(tokenId, tenantId, trx).catch(() => undefined);
        await audit.appendInTx(trx, [{
          ...auditFrom(actorCtx), action: 'automation.run.finish', resource: { type: 'automation', id: automation.id, name: automation.name },
          outcome: status === 'succeeded' ? 'allowed' : 'failed', reason: status === 'succeeded' ? null : 'RUN_FAILED',
          context: { ...auditFrom(actorCtx).context, runId },
        }]);
      });
    } catch (err) {
      // The run's record could not be written: its token must still die with the run, not at its expiry.
      if (tokenId) await tokens.revoke(tokenId, tenantId).catch(() => undefined);
      throw err;
    } finally {
      if (tokenId) tokens.forgetToken(tokenId);
    }
  }

  async function startRun(ctx: TenantContext, name: string, opts: { environment: string; input?: unknown; trigger: RunTrigger; wait: boolean }): Promise<Run> {
    // The node still answers HTTP while its runs finish: a trigger arriving then must not extend the stop without end.
    if (draining) fail('SHUTTING_DOWN', 'this node is stopping and starts no new automation run; retry on another node');
    // Waited for by a drain from here on: a start under way when it begins becomes a run it waits for.
    let started!: () => void;
    const starting = new Promise<void>((resolve) => (started = resolve));
    inFlight.add(starting);
    try {
      return await begin(ctx, name, opts);
    } finally {
      inFlight.delete(starting);
      started();
    }
  }

  async function begin(ctx: TenantContext, name: string, opts: { environment: string; input?: unknown; trigger: RunTrigger; wait: boolean }): Promise<Run> {
    const row = await automations.load(ctx, name);
    const { definition: def, revision } = toAutomation(row);
    await tenants.environment(ctx.tenantId, opts.environment);
    if (!def.environments.includes(opts.environment)) {
      fail('ENVIRONMENT_NOT_ALLOWED', `automation "${name}" may run only in ${def.environments.join(', ')}`);
    }
    if (opts.trigger === 'manual') await automations.requireAuthoring(ctx, def, [opts.environment]);
    const runId = newId();
    const now = clock.now();
    const machine = await repo.findMachineByName(ctx.tenantId, def.runAs);
    const runRow: AutomationRunsTable = {
      id: runId, tenant_id: ctx.tenantId, automation_id: row.id, automation_name: def.name, environment: opts.environment, trigger: opts.trigger,
      status: 'running', revision, actor_type: ctx.actor.type, actor_id: ctx.actor.id, started_at: now, finished_at: null, steps: '[]', step_summary: '[]', error: null,
    };
    const token = await db.transaction().execute(async (trx) => {
      await repo.insertRun(runRow, trx);
      const issued = !machine || !(await machines.lockLive(trx, machine.id)) ? null
        // Under the identity's own name, as its proxy steps act and the run-as check asked: policies may name it.
        : await tokens.issue({ tenantId: ctx.tenantId, kind: 'machine', principalId: machine.id, name: machine.name, environment: opts.environment, ttlMs: limits.runTimeoutMs + 60_000 }, trx);
      // The run's token id: every use by the run (proxy or a script's SDK) carries it as credentialId.
      await audit.appendInTx(trx, [{
        ...auditFrom(ctx), action: 'automation.run.start', resource: { type: 'automation', id: row.id, name: def.name }, environment: opts.environment,
        outcome: 'allowed', context: { ...auditFrom(ctx).context, runId, trigger: opts.trigger, runAs: def.runAs, ...(issued ? { runTokenId: issued.id } : {}) },
      }]);
      return issued;
    });
    const work = (async () => {
      let outcome: { records: StepRecord[]; failure: string | null };
      try {
        outcome = token && machine
          ? await execute(ctx.tenantId, def, runId, opts.environment, opts.input ?? {}, machine, token)
          : { records: [], failure: `MACHINE_DISABLED: the run identity "${def.runAs}" does not exist or is disabled` };
      } catch (err) {
        // Whatever broke outside a step (the redactor, the clock), the run still finishes and its token dies.
        outcome = { records: [], failure: describeError(err) };
      }
      await finish(ctx.tenantId, runId, { id: row.id, name: def.name }, token?.id ?? null, ctx, outcome);
    })();
    const tracked = work.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (opts.wait) await work;
    else work.catch((err: unknown) => deps.onBackgroundError?.(err));
    return toRun((await repo.findRun(ctx.tenantId, runId))!);
  }

  return {
    /** Starts a run; with `wait` it resolves once the run has finished (manual runs from the CLI). */
    start: startRun,

    /** Refuses new runs (SHUTTING_DOWN) and resolves when every run started so far has finished (shutdown, tests). */
    async drain(): Promise<void> {
      draining = true;
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },

    /**
     * Runs still marked running long after any run could last were cut off by a crash: mark them
     * failed (their tokens expire on their own). Called at start-up.
     */
    async recoverInterrupted(): Promise<number> {
      const cutoff = clock.now() - limits.runTimeoutMs - 120_000;
      const res = await db.updateTable('automation_runs').set({ status: 'failed', finished_at: clock.now(), error: 'INTERRUPTED: the server stopped during the run' })
        .where('status', '=', 'running').where('started_at', '<', cutoff).executeTakeFirst();
      return Number(res.numUpdatedRows);
    },
  };
}

export type Runner = ReturnType<typeof createRunner>;
