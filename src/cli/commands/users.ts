import { positionals, UsageError } from '../args.ts';
import { route } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';
import { readLines } from './auth.ts';

/** The `users` group: people in the tenant (tenant admins). A user's own session verbs live in auth.ts. */

interface User { id: string; username: string; totpEnabled: boolean; createdAt: string; passwordChangedAt: string; disabledAt: string | null }

const create: Command = {
  name: 'create',
  summary: 'Create a user; the initial password is read from stdin or a hidden prompt',
  usage: 'users create NAME',
  help: [
    'NAME: lower-case letters, digits and . _ -, starting with a letter. The password (at least 12',
    'characters, not a common one) is the first line of stdin, or prompted twice; never an argument.',
  ],
  options: {},
  async run({ args, api, out, deps }) {
    if (args.length > 1) throw new UsageError('the password is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or type it at the prompt');
    const [username] = positionals(args, ['NAME'], create.usage) as [string];
    const tty = deps.stdin.isTTY === true;
    const [password, repeat] = await readLines(deps, [`Password for ${username} (input hidden): `, ...(tty ? ['Again: '] : [])]);
    if (password === '') throw new UsageError('no password given', 'pipe it on stdin or type it at the prompt');
    if (tty && password !== repeat) throw new UsageError('the passwords do not match');
    const user = await api.call<User>('POST', '/v1/users', { body: { username, password } });
    out.result(user, () => `Created user ${user.username} (${user.id}). They sign in with: keyhold login --username ${user.username}`);
  },
};

const list: Command = {
  name: 'list',
  summary: 'List the users of the tenant',
  usage: 'users list',
  options: {},
  async run({ args, api, out }) {
    positionals(args, [], list.usage);
    const res = await api.call<{ items: User[] }>('GET', '/v1/users');
    out.result(res, () => (res.items.length === 0 ? 'No users.' : table(
      ['USERNAME', 'ID', 'TOTP', 'CREATED', 'DISABLED'],
      res.items.map((u) => [u.username, u.id, u.totpEnabled ? 'yes' : 'no', time(u.createdAt), time(u.disabledAt)]),
    )));
  },
};

const describe: Command = {
  name: 'describe',
  summary: 'Show one user: name, id, second factor, password age, disabled or not',
  usage: 'users describe ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], describe.usage) as [string];
    const u = await api.call<User>('GET', route`/v1/users/${id}`);
    out.result(u, () => fields([
      ['Username', u.username], ['ID', u.id], ['TOTP', u.totpEnabled ? 'enabled' : 'not enabled'], ['Created', time(u.createdAt)],
      ['Password changed', time(u.passwordChangedAt)], ['Disabled', time(u.disabledAt)],
    ]));
  },
};

const disable: Command = {
  name: 'disable',
  summary: 'Disable a user and end their sessions at once',
  usage: 'users disable ID',
  options: {},
  async run({ args, api, out }) {
    const [id] = positionals(args, ['ID'], disable.usage) as [string];
    const user = await api.call<User>('POST', route`/v1/users/${id}/disable`);
    out.result(user, () => `Disabled ${user.username}; their sessions have ended.`);
  },
};

export const usersGroup: Group = {
  name: 'users',
  summary: 'People in the tenant (tenant admins)',
  commands: [create, list, describe, disable],
};
