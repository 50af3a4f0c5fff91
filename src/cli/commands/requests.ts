import { positionals, required, str, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, CommandContext, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';

/** The `requests` group and `break-glass`: escrow from the requester's and the approver's side. */

export interface AccessRequest {
  id: string; requester: { type: string; id: string; ownerId: string | null }; action: string; environment: string;
  secrets: Array<{ id: string; name: string }>; justification: string; durationSeconds: number; state: string; breakGlass: boolean;
  rule: { id: string; policyVersion: number; steps: Array<{ groups: string[]; approvals: number }> }; waitingForStep: number | null;
  approvals: Array<{ approverId: string; decision: string; step: number; comment: string; durationSeconds: number | null; createdAt: string; counts?: boolean }>;
  grant: { state: string; expiresAt: string | null; revokedAt: string | null }; review: { id: string; state: string; outcome: string | null } | null;
  createdAt: string; expiresAt: string; decidedAt: string | null; decidedBy: string | null;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** "90s", "15m", "2h", "1d" or plain seconds; `flag` names the option in the error. */
export function parseDurationFlag(text: string, flag = 'duration'): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (!m || Number(m[1]) === 0) throw new UsageError(`--${flag} must be like 90s, 15m, 2h or 1d (got "${text}")`);
  return Number(m[1]) * UNIT_SECONDS[m[2] || 's']!;
}

function summary(r: AccessRequest): string {
  const state = r.state === 'approved' ? `approved, grant ${r.grant.state}${r.grant.expiresAt ? ` until ${time(r.grant.expiresAt)}` : ''}` : r.state;
  return `${r.breakGlass ? 'Break-glass ' : 'Request '}${r.id}: ${r.action} ${r.secrets.map((s) => s.name).join(', ')} in ${r.environment} — ${state}${r.waitingForStep ? ` (waiting for step ${r.waitingForStep} of ${r.rule.steps.length})` : ''}.`;
}

function details(r: AccessRequest): string {
  return [
    fields([
      ['ID', r.id], ['State', r.state], ['Action', r.action], ['Secrets', r.secrets.map((s) => s.name).join(', ')], ['Environment', r.environment],
      ['Requester', `${r.requester.type} ${r.requester.id}${r.requester.ownerId ? ` (owned by ${r.requester.ownerId})` : ''}`],
      ['Justification', r.justification], ['Duration', `${r.durationSeconds} s`], ['Break-glass', r.breakGlass ? 'yes' : 'no'],
      ['Rule', `${r.rule.id} (policy v${r.rule.policyVersion}): ${r.rule.steps.map((s, i) => `step ${i + 1}: ${s.approvals} of ${s.groups.join('|')}`).join(', then ')}`],
      ['Waiting for', r.waitingForStep ? `step ${r.waitingForStep}` : null], ['Grant', `${r.grant.state}${r.grant.expiresAt ? ` until ${time(r.grant.expiresAt)}` : ''}`],
      ['Review', r.review ? `${r.review.state}${r.review.outcome ? ` (${r.review.outcome})` : ''} ${r.review.id}` : null],
      ['Filed', time(r.createdAt)], ['Expires unanswered', r.state === 'pending' ? time(r.expiresAt) : null], ['Decided', r.decidedAt ? `${time(r.decidedAt)} by ${r.decidedBy}` : null],
    ]),
    ...(r.approvals.length ? ['', table(['APPROVER', 'DECISION', 'STEP', 'COUNTS', 'WHEN', 'COMMENT'], r.approvals.map((a) => [a.approverId, a.decision, a.step, a.counts === false ? 'no (lapsed)' : 'yes', time(a.createdAt), a.comment]))] : []),
  ].join('\n');
}

function listing(items: AccessRequest[]): string {
  if (items.length === 0) return 'No requests.';
  return table(['ID', 'STATE', 'ACTION', 'SECRETS', 'ENV', 'GRANT', 'FILED'], items.map((r) => [
    r.id, r.state + (r.waitingForStep ? ` (step ${r.waitingForStep})` : ''), r.action, r.secrets.map((s) => s.name).join(','), r.environment,
    r.grant.state === 'none' ? '' : `${r.grant.state}${r.grant.state === 'active' ? ` until ${time(r.grant.expiresAt)}` : ''}`, time(r.createdAt),
  ]));
}

const TARGET_OPTIONS = { env: { type: 'string' }, action: { type: 'string' }, justification: { type: 'string' }, duration: { type: 'string' } } as const;

function targetBody({ args, flags }: CommandContext, usage: string) {
  if (args.length === 0) throw new UsageError('name at least one secret', `usage: keyhold ${usage}`);
  const duration = str(flags, 'duration');
  return {
    secrets: args, environment: required(flags, 'env', 'production'), action: str(flags, 'action') ?? 'reveal',
    justification: required(flags, 'justification', '"INC-123: why you need it"'), ...(duration ? { durationSeconds: parseDurationFlag(duration) } : {}),
  };
}

const file: Command = {
  name: 'file',
  summary: 'Ask for access an access policy puts behind approval (reveal, rotate, write; machines: use)',
  usage: 'requests file SECRET... --env E --justification TEXT [--action reveal|rotate|write|use] [--duration 1h]',
  help: ['The grant starts when the last approval lands and lasts --duration (default 1 h, at most what the rule allows).'],
  options: TARGET_OPTIONS,
  async run(ctx) {
    const res = await ctx.api.call<AccessRequest>('POST', '/v1/requests', { body: targetBody(ctx, file.usage) });
    ctx.out.result(res, () => `${summary(res)}\nApprovers were notified; follow it with 'keyhold requests show ${res.id}'.`);
  },
};

const list: Command = {
  name: 'list',
  summary: 'Your requests (--queue: the ones waiting for you to decide; --all: every one you may see)',
  usage: 'requests list [--queue | --all] [--state pending|approved|denied|expired|cancelled|superseded]',
  options: { queue: { type: 'boolean' }, all: { type: 'boolean' }, state: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    if (flags.queue && flags.all) throw new UsageError('give --queue or --all, not both');
    const scope = flags.queue ? 'queue' : flags.all ? 'all' : 'mine';
    const res = await api.call<{ items: AccessRequest[] }>('GET', '/v1/requests', { query: { scope, state: str(flags, 'state') } });
    out.result(res, () => listing(res.items));
  },
};

const pending: Command = {
  name: 'pending',
  summary: 'Requests waiting for your decision (same as list --queue)',
  usage: 'requests pending',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], pending.usage);
    const res = await api.call<{ items: AccessRequest[] }>('GET', '/v1/requests', { query: { scope: 'queue' } });
    out.result(res, () => (res.items.length === 0 ? 'Nothing waits for you.' : listing(res.items)));
  },
};

const show: Command = {
  name: 'show',
  summary: 'One request: its rule, decisions, grant and review',
  usage: 'requests show ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], show.usage) as [string];
    const res = await api.call<AccessRequest>('GET', route`/v1/requests/${id}`);
    out.result(res, () => details(res));
  },
};

const approve: Command = {
  name: 'approve',
  summary: 'Approve a request (needs a fresh second factor: keyhold step-up); --duration shortens the grant',
  usage: 'requests approve ID [--comment TEXT] [--duration 30m]',
  options: { comment: { type: 'string' }, duration: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [id] = positionals(args, ['ID'], approve.usage) as [string];
    const duration = str(flags, 'duration');
    const comment = str(flags, 'comment');
    const res = await api.call<AccessRequest>('POST', route`/v1/requests/${id}/approve`, {
      body: { ...(comment ? { comment } : {}), ...(duration ? { durationSeconds: parseDurationFlag(duration) } : {}) },
    });
    out.result(res, () => summary(res));
  },
};

const deny: Command = {
  name: 'deny',
  summary: 'Deny a request, saying why',
  usage: 'requests deny ID --comment TEXT',
  options: { comment: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [id] = positionals(args, ['ID'], deny.usage) as [string];
    const res = await api.call<AccessRequest>('POST', route`/v1/requests/${id}/deny`, { body: { comment: required(flags, 'comment', '"use the replica"') } });
    out.result(res, () => summary(res));
  },
};

const cancel: Command = {
  name: 'cancel',
  summary: 'Withdraw your pending request',
  usage: 'requests cancel ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], cancel.usage) as [string];
    const res = await api.call<AccessRequest>('POST', route`/v1/requests/${id}/cancel`);
    out.result(res, () => summary(res));
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'End an approved request\'s grant now',
  usage: 'requests revoke ID [--comment TEXT]',
  options: { comment: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [id] = positionals(args, ['ID'], revoke.usage) as [string];
    const comment = str(flags, 'comment');
    const res = await api.call<AccessRequest>('POST', route`/v1/requests/${id}/revoke`, { body: comment ? { comment } : {} });
    out.result(res, () => summary(res));
  },
};

export const requestsGroup: Group = { name: 'requests', summary: 'Access requests: file, decide, follow, revoke', commands: [file, list, pending, show, approve, deny, cancel, revoke] };

export const breakGlassCommand: Command = {
  name: 'break-glass',
  summary: 'Take emergency access now (only people the access policy lists); alerts approvers and opens a review',
  usage: 'break-glass SECRET... --env E --justification TEXT [--action reveal] [--duration 30m]',
  help: ['Needs a fresh second factor (keyhold step-up). The grant is short (the rule\'s break-glass duration, default 1 h). Someone else must review it: keyhold reviews list.'],
  options: TARGET_OPTIONS,
  async run(ctx) {
    const res = await ctx.api.call<AccessRequest>('POST', '/v1/break-glass', { body: targetBody(ctx, breakGlassCommand.usage) });
    ctx.out.result(res, () => `${summary(res)}\nApprovers were alerted; review ${res.review?.id} stays open until someone else completes it.`);
  },
};
