import { positionals, str, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, CommandContext, Group } from '../command.ts';
import { readJson } from '../files.ts';
import { readSecretInput } from '../input.ts';
import { fields, table, time } from '../output.ts';

/** `rotate` and the `rotation` group: policies, status, rollback, manual values (SPEC §6). */

interface Rotation {
  id: string; secret: string; environment: string; state: string; step: string; trigger: string; rehearsal: boolean;
  fromVersion: number | null; toVersion: number | null; error: { code: string; step: string; detail: string } | null;
  failedConnectors: Array<{ connector: string; detail: string }>; checks: Array<{ connector: string; ok: boolean }>;
}
interface Status {
  secret: string; environment: string; rotator: string; nextRunAt: string | null; lastResult: string | null; lastError: string | null;
  failures: number; active: Rotation | null; overdue: boolean;
  retry: { failedAttempts: number; maxAttempts: number; nextAttemptAt: string | null; gaveUpAt: string | null } | null;
  attention: string[];
}

/** Where a policy's retries stand, in one cell. */
const retryCell = (s: Status) => (!s.retry ? '-'
  : s.retry.gaveUpAt ? `GAVE UP (${s.retry.failedAttempts})`
    : `${s.retry.failedAttempts}/${s.retry.maxAttempts}${s.retry.nextAttemptAt ? `, next ${time(s.retry.nextAttemptAt)}` : ''}`);

const env = (ctx: CommandContext, usage: string) => {
  const e = str(ctx.flags, 'env');
  if (!e) throw new UsageError('--env is required', `usage: keyhold ${usage}`);
  return e;
};
const base = (name: string, environment: string) => route`/v1/secrets/${name}/rotation/${environment}`;

/** One rotation as people read it: the outcome, the failed step and connectors. */
function describe(r: Rotation): string {
  const head = `${r.rehearsal ? 'Rehearsal' : 'Rotation'} ${r.id} of ${r.secret} in ${r.environment}: ${r.state}`;
  const lines = [head];
  if (r.state === 'succeeded' && !r.rehearsal) lines.push(`  current version ${r.toVersion} (previous ${r.fromVersion ?? 'none'})`);
  if (r.checks.length) lines.push(`  ${r.checks.filter((c) => c.ok).length}/${r.checks.length} dependent connectors passed their health check`);
  if (r.error) lines.push(`  failed at ${r.error.step}: ${r.error.code}: ${r.error.detail}`);
  for (const c of r.failedConnectors) lines.push(`  connector ${c.connector}: ${c.detail}`);
  if (r.state === 'awaiting_value') lines.push(`  waiting for a value: keyhold rotation supply ${r.secret} --env ${r.environment}`);
  return lines.join('\n');
}
const exitFor = (r: Rotation) => (r.state === 'succeeded' || r.state === 'awaiting_value' ? 0 : 1);

export const rotateCommand: Command = {
  name: 'rotate',
  summary: 'Rotate a secret now through its policy (or rehearse it against a sandbox)',
  usage: 'rotate NAME --env E [--rehearse] [--compromised]',
  help: [
    '--rehearse     run the whole protocol against a sandbox copy of the source; no version is written anywhere',
    '--compromised  the incident trigger: rotate at once (audited as such)',
    'Exit code 1 when the rotation failed and was rolled back.',
  ],
  options: { env: { type: 'string' }, rehearse: { type: 'boolean' }, compromised: { type: 'boolean' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], rotateCommand.usage) as [string];
    const e = env(ctx, rotateCommand.usage);
    const res = await ctx.api.call<Rotation>('POST', `${base(name, e)}/rotate`, {
      body: { ...(ctx.flags.rehearse === true ? { rehearse: true } : {}), ...(ctx.flags.compromised === true ? { trigger: 'compromised' } : {}) },
    });
    ctx.out.result(res, () => describe(res));
    return exitFor(res);
  },
};

const status: Command = {
  name: 'status',
  summary: 'Every rotation policy: next run, last result, failures, retries, live and overdue rotations, what needs attention',
  usage: 'rotation status',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], status.usage);
    const res = await api.call<{ items: Status[] }>('GET', '/v1/rotations/status');
    out.result(res, () => [table(['SECRET', 'ENV', 'ROTATOR', 'NEXT RUN', 'LAST', 'FAILURES', 'RETRY', 'NOW'], res.items.map((s) => [
      s.secret, s.environment, s.rotator, time(s.nextRunAt) ?? '-', s.lastResult ?? '-', s.failures, retryCell(s),
      s.active ? `${s.active.state}${s.overdue ? ' (OVERDUE)' : ''}` : '-',
    ])), ...res.items.flatMap((s) => s.attention.map((a) => `ATTENTION ${s.secret} in ${s.environment}: ${a}`))].join('\n'));
  },
};

const set: Command = {
  name: 'set',
  summary: 'Set the rotation policy of a secret in an environment from a JSON file',
  usage: 'rotation set NAME --env E --file POLICY.json',
  help: ['POLICY.json: { "rotator": "random|postgres|hmac|http|manual", "settings": {...}, "intervalMs" | "cron", "notify": [...], "rollbackWindowMs", "expiryLeadMs", "catchUp": "skip|once" }',
    'Settings that name other secrets (http tokenSecret, postgres adminPasswordSecret) need `use` of them in --env.'],
  options: { env: { type: 'string' }, file: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], set.usage) as [string];
    const file = str(ctx.flags, 'file');
    if (!file) throw new UsageError('--file is required', `usage: keyhold ${set.usage}`);
    const res = await ctx.api.call<Status>('PUT', base(name, env(ctx, set.usage)), { body: await readJson(file, '--file') });
    ctx.out.result(res, () => `Rotation policy of ${res.secret} in ${res.environment}: ${res.rotator}, next run ${time(res.nextRunAt) ?? 'on demand'}.`);
  },
};

const show: Command = {
  name: 'show',
  summary: 'Show the rotation policy',
  usage: 'rotation show NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], show.usage) as [string];
    const res = await ctx.api.call<Status & { settings: unknown }>('GET', base(name, env(ctx, show.usage)));
    ctx.out.result(res, () => fields([
      ['secret', res.secret], ['environment', res.environment], ['rotator', res.rotator], ['settings', JSON.stringify(res.settings)],
      ['next run', time(res.nextRunAt)], ['last result', res.lastResult], ['last error', res.lastError], ['failures', res.failures],
    ]));
  },
};

const del: Command = {
  name: 'delete',
  summary: 'Delete the rotation policy',
  usage: 'rotation delete NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], del.usage) as [string];
    await ctx.api.call('DELETE', base(name, env(ctx, del.usage)));
    ctx.out.result({ deleted: true }, () => `Deleted the rotation policy of ${name}.`);
  },
};

const rollback: Command = {
  name: 'rollback',
  summary: 'Make the previous version current again (the source is set back first), within the rollback window',
  usage: 'rotation rollback NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], rollback.usage) as [string];
    const res = await ctx.api.call<{ version: number; previousVersion: number | null }>('POST', `${base(name, env(ctx, rollback.usage))}/rollback`);
    ctx.out.result(res, () => `Rolled ${name} back: version ${res.version} is current (version ${res.previousVersion} is previous).`);
  },
};

const supply: Command = {
  name: 'supply',
  summary: 'Supply the value a manual rotation waits for (from stdin, never an argument)',
  usage: 'rotation supply NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], supply.usage) as [string];
    const e = env(ctx, supply.usage);
    const value = await readSecretInput(ctx.deps.stdin, ctx.deps.stderr, `New value for ${name} (input hidden): `);
    const res = await ctx.api.call<Rotation>('POST', `${base(name, e)}/supply`, { body: { value } });
    ctx.out.result(res, () => describe(res));
    return exitFor(res);
  },
};

const cancel: Command = {
  name: 'cancel',
  summary: 'Abandon a manual rotation that waits for a value',
  usage: 'rotation cancel NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], cancel.usage) as [string];
    const res = await ctx.api.call<Rotation>('POST', `${base(name, env(ctx, cancel.usage))}/cancel`);
    ctx.out.result(res, () => describe(res));
  },
};

const history: Command = {
  name: 'history',
  summary: 'Rotations of a secret in an environment, newest first',
  usage: 'rotation history NAME --env E',
  options: { env: { type: 'string' } },
  async run(ctx) {
    const [name] = positionals(ctx.args, ['NAME'], history.usage) as [string];
    const res = await ctx.api.call<{ items: Array<Rotation & { startedAt: string }> }>('GET', `${base(name, env(ctx, history.usage))}/history`);
    ctx.out.result(res, () => table(['ID', 'STARTED', 'TRIGGER', 'STATE', 'FAILED AT'], res.items.map((r) => [
      r.id, time(r.startedAt), `${r.trigger}${r.rehearsal ? ' (rehearsal)' : ''}`, r.state, r.error ? `${r.error.step}: ${r.error.code}` : '-',
    ])));
  },
};

export const rotationGroup: Group = { name: 'rotation', summary: 'Rotation policies, status, rollback and manual values', commands: [status, set, show, del, rollback, supply, cancel, history] };
