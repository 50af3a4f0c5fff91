import { positionals, str, strings, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { table, time } from '../output.ts';

/** The `grants` group: bind built-in roles to users and machines (tenant admin, with a fresh second factor). */

interface Grant {
  id: string; principalType: string; principalId: string; role: string;
  environments: string[] | null; namePatterns: string[] | null; expiresAt: string | null; revokedAt: string | null;
  state: 'live' | 'expired' | 'revoked';
}

const add: Command = {
  name: 'add',
  summary: 'Grant a role to a user or machine, optionally narrowed to environments and name patterns, optionally expiring',
  usage: 'grants add (--user ID | --machine ID) --role ROLE [--env E ...] [--pattern P ...] [--expires ISO-TIME]',
  help: [
    'Roles: viewer, builder, revealer, secret-admin, rotation-operator, approver, auditor, tenant-admin.',
    '--pattern STRIPE_*   only secrets whose name matches (* is any run of characters); repeatable',
  ],
  options: { user: { type: 'string' }, machine: { type: 'string' }, role: { type: 'string' }, env: { type: 'string', multiple: true }, pattern: { type: 'string', multiple: true }, expires: { type: 'string' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], add.usage);
    const user = str(flags, 'user');
    const machine = str(flags, 'machine');
    if (Boolean(user) === Boolean(machine)) throw new UsageError('give exactly one of --user ID or --machine ID', `usage: keyhold ${add.usage}`);
    const role = str(flags, 'role');
    if (!role) throw new UsageError('--role is required', 'e.g. --role revealer');
    const environments = strings(flags, 'env');
    const namePatterns = strings(flags, 'pattern');
    const expiresAt = str(flags, 'expires');
    const res = await api.call<Grant>('POST', '/v1/grants', {
      body: {
        principalType: user ? 'user' : 'machine', principalId: (user ?? machine)!, role,
        ...(environments.length ? { environments } : {}), ...(namePatterns.length ? { namePatterns } : {}), ...(expiresAt ? { expiresAt } : {}),
      },
    });
    out.result(res, () => `Granted ${res.role} to ${res.principalType} ${res.principalId} (grant ${res.id}).`);
  },
};

const list: Command = {
  name: 'list',
  summary: 'List live grants (optionally of one principal; --include-revoked and --include-expired add those)',
  usage: 'grants list [--principal ID] [--include-revoked] [--include-expired]',
  help: [
    'A grant is expired from its EXPIRES time on (it no longer counts in decisions); revoked grants show when they were revoked.',
  ],
  options: { principal: { type: 'string' }, 'include-revoked': { type: 'boolean' }, 'include-expired': { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    positionals(args, [], list.usage);
    const principal = str(flags, 'principal');
    const includeRevoked = flags['include-revoked'] === true;
    const includeExpired = flags['include-expired'] === true;
    const query = new URLSearchParams({
      ...(principal ? { principalId: principal } : {}), ...(includeRevoked ? { includeRevoked: 'true' } : {}), ...(includeExpired ? { includeExpired: 'true' } : {}),
    }).toString();
    const res = await api.call<{ items: Grant[] }>('GET', `/v1/grants${query ? `?${query}` : ''}`);
    // Only a listing that can hold more than live grants needs a column saying which each one is.
    const withState = includeRevoked || includeExpired;
    out.result(res, () => table(['ID', 'ROLE', 'PRINCIPAL', 'ENVIRONMENTS', 'PATTERNS', 'EXPIRES', ...(withState ? ['STATE'] : []), ...(includeRevoked ? ['REVOKED'] : [])], res.items.map((g) => [
      g.id, g.role, `${g.principalType}:${g.principalId}`, g.environments?.join(',') ?? '*', g.namePatterns?.join(',') ?? '*', time(g.expiresAt) ?? '-',
      ...(withState ? [g.state] : []), ...(includeRevoked ? [time(g.revokedAt) ?? '-'] : []),
    ])));
  },
};

const revoke: Command = {
  name: 'revoke',
  summary: 'Revoke a grant now',
  usage: 'grants revoke ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], revoke.usage) as [string];
    const res = await api.call<Grant>('DELETE', route`/v1/grants/${id}`);
    out.result(res, () => `Revoked grant ${res.id} (${res.role} of ${res.principalType} ${res.principalId}).`);
  },
};

export const grantsGroup: Group = { name: 'grants', summary: 'Role grants of users and machines', commands: [add, list, revoke] };
