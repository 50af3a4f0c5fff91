import { parseWhole, positionals, required, str, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';
import { parseUserJson, readText } from '../files.ts';

/** The `reviews` group (break-glass follow-up) and the `access-policy` group (approval rules and groups, versioned). */

interface Review {
  id: string; requestId: string; takenBy: string; secrets: string[]; environment: string; action: string; justification: string;
  openedAt: string; state: string; reviewedAt: string | null; reviewedBy: string | null; outcome: string | null; comment: string | null;
}
interface PolicyVersion { version: number; document: unknown; comment: string; createdAt: string; createdBy: string; active: boolean }

const reviewList: Command = {
  name: 'list',
  summary: 'Break-glass reviews still open (--done: completed ones; --all: both)',
  usage: 'reviews list [--done | --all]',
  options: { done: { type: 'boolean' }, all: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], reviewList.usage);
    const state = flags.all ? 'all' : flags.done ? 'done' : 'open';
    const res = await api.call<{ items: Review[] }>('GET', '/v1/reviews', { query: { state } });
    out.result(res, () => (res.items.length === 0 ? 'No reviews.' : table(['ID', 'STATE', 'TAKEN BY', 'SECRETS', 'ENV', 'OPENED', 'OUTCOME'],
      res.items.map((r) => [r.id, r.state, r.takenBy, r.secrets.join(','), r.environment, time(r.openedAt), r.outcome]))));
  },
};

const reviewShow: Command = {
  name: 'show',
  summary: 'One break-glass review',
  usage: 'reviews show ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], reviewShow.usage) as [string];
    const r = await api.call<Review>('GET', route`/v1/reviews/${id}`);
    out.result(r, () => fields([
      ['ID', r.id], ['Request', r.requestId], ['Taken by', r.takenBy], ['Secrets', r.secrets.join(', ')], ['Environment', r.environment],
      ['Justification', r.justification], ['Opened', time(r.openedAt)], ['State', r.state],
      ['Reviewed', r.reviewedAt ? `${time(r.reviewedAt)} by ${r.reviewedBy}` : null], ['Outcome', r.outcome], ['Comment', r.comment],
    ]));
  },
};

const reviewComplete: Command = {
  name: 'complete',
  summary: 'Complete a break-glass review (not your own; needs a fresh second factor)',
  usage: 'reviews complete ID --outcome justified|unjustified --comment TEXT',
  options: { outcome: { type: 'string' }, comment: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [id] = positionals(args, ['ID'], reviewComplete.usage) as [string];
    const outcome = required(flags, 'outcome', 'justified');
    if (outcome !== 'justified' && outcome !== 'unjustified') throw new UsageError('--outcome is justified or unjustified');
    const r = await api.call<Review>('POST', route`/v1/reviews/${id}`, { body: { outcome, comment: required(flags, 'comment', '"matches the incident"') } });
    out.result(r, () => `Review ${r.id} done: ${r.outcome}.`);
  },
};

export const reviewsGroup: Group = { name: 'reviews', summary: 'Post-hoc reviews of break-glass access', commands: [reviewList, reviewShow, reviewComplete] };

async function readDocument(path: string): Promise<unknown> {
  return parseUserJson(await readText(path, 'access policy file'), path);
}

const VERSION_MAX = 2_147_483_647;

const policyShow: Command = {
  name: 'show',
  summary: 'Print the access policy in force (or --version N) as JSON',
  usage: 'access-policy show [--version N]',
  options: { version: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], policyShow.usage);
    const v = str(flags, 'version');
    const res = await api.call<PolicyVersion>('GET', v === undefined ? '/v1/access-policies' : `/v1/access-policies/versions/${parseWhole('--version', v, 0, VERSION_MAX)}`);
    out.result(res, () => `// version ${res.version}${res.active ? ' (in force)' : ''}: ${res.comment}\n${JSON.stringify(res.document, null, 2)}`);
  },
};

const policyApply: Command = {
  name: 'apply',
  summary: 'Check a JSON access policy and put it in force (a new version)',
  usage: 'access-policy apply FILE.json [--comment TEXT]',
  help: ['Format: docs/escrow.md; example: docs/examples/access-policy.json.'],
  options: { comment: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [path] = positionals(args, ['FILE.json'], policyApply.usage) as [string];
    const comment = str(flags, 'comment');
    const res = await api.call<PolicyVersion>('PUT', '/v1/access-policies', { body: { document: await readDocument(path), ...(comment ? { comment } : {}) } });
    out.result(res, () => `Access policy version ${res.version} is in force.`);
  },
};

const policyValidate: Command = {
  name: 'validate',
  summary: 'Check a JSON access policy against the server without applying it',
  usage: 'access-policy validate FILE.json',
  options: {},
  async run({ args, api, out }) {
    const [path] = positionals(args, ['FILE.json'], policyValidate.usage) as [string];
    const res = await api.call<{ valid: boolean; errors: string[] }>('POST', '/v1/access-policies/validate', { body: { document: await readDocument(path) } });
    out.result(res, () => (res.valid ? 'Valid.' : `Invalid:\n${res.errors.map((e) => `  ${e}`).join('\n')}`));
    return res.valid ? 0 : 1;
  },
};

const policyHistory: Command = {
  name: 'history',
  summary: 'List access policy versions',
  usage: 'access-policy history',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], policyHistory.usage);
    const res = await api.call<{ items: Omit<PolicyVersion, 'document'>[] }>('GET', '/v1/access-policies/versions');
    out.result(res, () => table(['VERSION', 'ACTIVE', 'CREATED', 'BY', 'COMMENT'], res.items.map((v) => [v.version, v.active ? 'yes' : '', time(v.createdAt), v.createdBy, v.comment])));
  },
};

const policyDiff: Command = {
  name: 'diff',
  summary: 'Line diff between two access policy versions (0 = none)',
  usage: 'access-policy diff FROM TO',
  options: {},
  async run({ args, api, out }) {
    const [from, to] = positionals(args, ['FROM', 'TO'], policyDiff.usage) as [string, string];
    const res = await api.call<{ diff: string }>('GET', '/v1/access-policies/diff', { query: { from: parseWhole('FROM', from, 0, VERSION_MAX), to: parseWhole('TO', to, 0, VERSION_MAX) } });
    out.result(res, () => res.diff);
  },
};

const policyRollback: Command = {
  name: 'rollback',
  summary: 'Re-apply an older access policy as a new version',
  usage: 'access-policy rollback VERSION',
  options: {},
  async run({ args, api, out }) {
    const [version] = positionals(args, ['VERSION'], policyRollback.usage) as [string];
    const res = await api.call<PolicyVersion>('POST', '/v1/access-policies/rollback', { body: { version: parseWhole('VERSION', version, 0, VERSION_MAX) } });
    out.result(res, () => `Access policy version ${res.version} (${res.comment}) is in force.`);
  },
};

export const accessPolicyGroup: Group = {
  name: 'access-policy', summary: 'Which actions need approval, by whom (versioned JSON)',
  commands: [policyShow, policyHistory, policyApply, policyValidate, policyDiff, policyRollback],
};
