import { positionals } from '../args.ts';
import type { Command, Group } from '../command.ts';
import { table, time } from '../output.ts';

/** The `tenants` group (root token). Access inside a tenant comes from users and machine identities with grants. */

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

export const tenantsGroup: Group = {
  name: 'tenants',
  summary: 'Tenants (root token)',
  commands: [list, create],
};
