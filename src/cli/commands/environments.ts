import { positionals } from '../args.ts';
import type { Command, Group } from '../command.ts';
import { table, time } from '../output.ts';

/** The `environments` group: the environments of the current tenant. */

interface Environment { id: string; name: string; createdAt: string }

const list: Command = {
  name: 'list',
  summary: 'List the environments of the tenant',
  usage: 'environments list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: Environment[] }>('GET', '/v1/environments');
    out.result(res, () => table(['NAME', 'ID', 'CREATED'], res.items.map((e) => [e.name, e.id, time(e.createdAt)])));
  },
};

const create: Command = {
  name: 'create',
  summary: 'Create an environment in the tenant',
  usage: 'environments create NAME',
  options: {},
  async run({ args, api, out }) {
    const [name] = positionals(args, ['NAME'], create.usage) as [string];
    const res = await api.call<Environment>('POST', '/v1/environments', { body: { name } });
    out.result(res, () => `Created environment ${res.name}.`);
  },
};

export const environmentsGroup: Group = {
  name: 'environments',
  summary: 'Environments of the tenant (development, staging, production, ...)',
  commands: [list, create],
};
