import { positionals, str, UsageError } from '../args.ts';
import { route, type ApiClient } from '../client.ts';
import type { Command, Group } from '../command.ts';
import { fields, table, time } from '../output.ts';
import { readLines } from './auth.ts';
import { parseDurationFlag } from './requests.ts';

/** The `users` group: people in the tenant (tenant admins). A user's own session verbs live in auth.ts. */

interface User { id: string; username: string; totpEnabled: boolean; createdAt: string; passwordChangedAt: string; disabledAt: string | null; email: string | null }

const create: Command = {
  name: 'create',
  summary: 'Create a user; the initial password is read from stdin or a hidden prompt',
  usage: 'users create NAME [--email ADDRESS]',
  help: [
    'NAME: lower-case letters, digits and . _ -, starting with a letter. The password (at least 12',
    'characters, not a common one) is the first line of stdin, or prompted twice; never an argument.',
    '--email: where notifications (escrow requests to approve, decisions, break-glass alerts) reach them.',
  ],
  options: { email: { type: 'string' } },
  async run({ args, flags, api, out, deps }) {
    if (args.length > 1) throw new UsageError('the password is not taken as an argument (it would be kept in shell history)', 'pipe it on stdin or type it at the prompt');
    const [username] = positionals(args, ['NAME'], create.usage) as [string];
    const tty = deps.stdin.isTTY === true;
    const [password, repeat] = await readLines(deps, [`Password for ${username} (input hidden): `, ...(tty ? ['Again: '] : [])]);
    if (password === '') throw new UsageError('no password given', 'pipe it on stdin or type it at the prompt');
    if (tty && password !== repeat) throw new UsageError('the passwords do not match');
    const email = str(flags, 'email');
    const user = await api.call<User>('POST', '/v1/users', { body: { username, password, ...(email === undefined ? {} : { email }) } });
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
      ['Password changed', time(u.passwordChangedAt)], ['Disabled', time(u.disabledAt)], ['E-mail', u.email ?? '-'],
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

/** A username is looked up among the tenant's users; anything else is taken as an id (the server says if there is none). */
async function userNamed(api: ApiClient, who: string): Promise<{ id: string; user: User | undefined }> {
  const user = (await api.call<{ items: User[] }>('GET', '/v1/users')).items.find((u) => u.username === who || u.id === who);
  return { id: user?.id ?? who, user };
}

const setEmail: Command = {
  name: 'set-email',
  summary: "Set or clear a user's e-mail address, where notifications reach them",
  usage: 'users set-email USER (ADDRESS | --clear)',
  help: ['USER: a username or a user id. ADDRESS: a bare address (ann@example.com). --clear removes it: they are mailed nothing.'],
  options: { clear: { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    const clear = flags.clear === true;
    const [who, address] = positionals(args, clear ? ['USER'] : ['USER', 'ADDRESS'], setEmail.usage) as [string, string | undefined];
    const { id } = await userNamed(api, who);
    const user = await api.call<User>('POST', route`/v1/users/${id}/email`, { body: { email: clear ? null : address } });
    out.result(user, () => (user.email === null ? `${user.username} has no e-mail address now.` : `${user.username}'s e-mail address is set.`));
  },
};

const totpTicket: Command = {
  name: 'totp-ticket',
  summary: "Issue a one-time ticket for a user's first TOTP enrolment (printed once)",
  usage: 'users totp-ticket USER [--ttl 24h] [--reset-factor]',
  help: [
    'USER: a username or a user id. A user with no second factor can enrol one only with this ticket,',
    'so a password alone never gives one. Prints only the ticket (details on stderr), so',
    '`keyhold users totp-ticket ann > ann.ticket` works; hand it over privately. A new ticket replaces',
    'the earlier one; it is used up by one enrolment. --ttl: 5m to 7d (default 24h).',
    '--reset-factor: the user lost their authenticator. Their factor is removed and their sessions end;',
    'they sign in with the password alone and enrol a new factor with this ticket.',
  ],
  options: { ttl: { type: 'string' }, 'reset-factor': { type: 'boolean' } },
  async run({ args, flags, api, out }) {
    const [who] = positionals(args, ['USER'], totpTicket.usage) as [string];
    const ttl = str(flags, 'ttl');
    const ttlSeconds = ttl === undefined ? undefined : parseDurationFlag(ttl, 'ttl');
    const { id, user } = await userNamed(api, who);
    const body = { ...(ttlSeconds === undefined ? {} : { ttlSeconds }), ...(flags['reset-factor'] === true ? { resetFactor: true } : {}) };
    const res = await api.call<{ ticket: string; expiresAt: string }>('POST', route`/v1/users/${id}/totp-ticket`, { body });
    if (!out.json) {
      if (body.resetFactor) out.note(`${user?.username ?? id}'s second factor is removed and their sessions have ended.`);
      out.note(`Enrolment ticket for ${user?.username ?? id}, shown ONCE, valid until ${time(res.expiresAt)}.`);
      out.note(`They run 'keyhold totp enroll' and give it at the prompt, on stdin or with --ticket-file.`);
    }
    out.result({ userId: id, ...res }, () => res.ticket);
  },
};

export const usersGroup: Group = {
  name: 'users',
  summary: 'People in the tenant (tenant admins)',
  commands: [create, list, describe, disable, setEmail, totpTicket],
};
