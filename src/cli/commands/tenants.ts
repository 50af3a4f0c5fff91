import { int, positionals, required } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';

/** The `tenants` group (root token): tenants and tenant-admin tokens. */

interface Tenant { id: string; name: string; createdAt: string }

const list: Command = {
  name: 'list',
  summary: 'List tenants',
  usage: 'tenants list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: Tenant[] }>('GET', '/v1/tenants');
    out.result(res, () => table(['NAME', 'ID', 'CREATED'], res.items.map((t) => [t.name, t.id, time(t.createdAt)])));
  },
};

const create: Command = {
  name: 'create',
  summary: 'Create a tenant (own key, default environments)',
  usage: 'tenants create NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], create.usage) as [string];
    const res = await api.call<Tenant>('POST', '/v1/tenants', { body: { name } });
    out.result(res, () => `Created tenant ${res.name} (${res.id}).`);
  },
};

const token: Command = {
  name: 'token',
  summary: 'Issue a tenant-admin token (shown once)',
  usage: 'tenants token TENANT --name N [--ttl SECONDS]',
  help: ['--name N        who or what the token is for (shown in the audit trail)', '--ttl SECONDS   expire after this long (60 .. 31536000)'],
  options: { name: { type: 'string' }, ttl: { type: 'string' } },
  async run({ args, flags, api, out }) {
    const [tenant] = positionals(args, ['TENANT'], token.usage) as [string];
    const name = required(flags, 'name', 'ci-deploy');
    const ttlSeconds = int(flags, 'ttl', 60, 31_536_000);
    const res = await api.call<{ id: string; token: string; tenant: string }>('POST', route`/v1/tenants/${tenant}/tokens`, {
      body: { name, ...(ttlSeconds !== undefined ? { ttlSeconds } : {}) },
    });
    if (!out.json) out.note('The token is shown ONCE; store it now (e.g. in your CI secret store).');
    out.result(res, () => fields([['Tenant', res.tenant], ['Token id', res.id], ['Token', res.token]]));
  },
};

export const tenantsGroup: Group = {
  name: 'tenants',
  summary: 'Tenants and tenant-admin tokens (root token)',
  commands: [list, create, token],
};
